package acl

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny []string
		addr        string
		want        Verdict
	}{
		{"empty lists allow", nil, nil, "198.18.0.1", Allowed},
		{"deny hit", nil, []string{"198.18.0.0/24"}, "198.18.0.9", Denied},
		{"deny miss", nil, []string{"198.18.0.0/24"}, "198.18.1.9", Allowed},
		{"allow hit", []string{"198.18.0.0/15"}, nil, "198.19.255.255", Allowed},
		{"allow miss", []string{"198.18.0.0/15"}, nil, "198.20.0.0", NotAllowed},
		{"deny wins over allow", []string{"198.18.0.0/15"}, []string{"198.18.7.0/24"}, "198.18.7.1", Denied},
		{"allow v4 does not allow v6", []string{"0.0.0.0/0"}, nil, "2001:db8::1", NotAllowed},
		{"v6 deny", nil, []string{"2001:db8::/32"}, "2001:db8:ffff::1", Denied},
		{"v6 allow /128", []string{"2001:db8::1/128"}, nil, "2001:db8::1", Allowed},
		{"v6 allow /128 neighbour", []string{"2001:db8::1/128"}, nil, "2001:db8::2", NotAllowed},
		{"mapped client checked as v4", nil, []string{"198.18.0.0/24"}, "::ffff:198.18.0.5", Denied},
		{"v6 /0", []string{"::/0"}, nil, "2001:db8::5", Allowed},
		{"v6 /64 upper edge", []string{"2001:db8:0:1::/64"}, nil, "2001:db8:0:1:ffff:ffff:ffff:ffff", Allowed},
		{"v6 /64 next", []string{"2001:db8:0:1::/64"}, nil, "2001:db8:0:2::", NotAllowed},
		{"v6 /33 boundary", []string{"2001:db8::/33"}, nil, "2001:db8:8000::", NotAllowed},
		{"v4 /32", []string{"198.18.0.1/32"}, nil, "198.18.0.1", Allowed},
		{"v4 /0 top", []string{"0.0.0.0/0"}, nil, "255.255.255.255", Allowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Compile(prefixes(t, tc.allow...), prefixes(t, tc.deny...))
			require.NoError(t, err)
			require.Equal(t, tc.want, l.Check(netip.MustParseAddr(tc.addr)))
		})
	}
}

func TestNilListAllows(t *testing.T) {
	var l *List
	require.Equal(t, Allowed, l.Check(netip.MustParseAddr("198.18.0.1")))
	require.True(t, l.Empty())
	l, err := Compile(nil, nil)
	require.NoError(t, err)
	require.True(t, l.Empty())
}

func TestBadPrefixes(t *testing.T) {
	tests := []struct {
		p    netip.Prefix
		want string
	}{
		{netip.MustParsePrefix("198.18.0.1/24"), "[0]: 198.18.0.1/24 has host bits set (did you mean 198.18.0.0/24?)"},
		{netip.Prefix{}, "[0]: invalid prefix"},
		{netip.MustParsePrefix("::ffff:198.18.0.0/120"), "[0]: ::ffff:198.18.0.0/120 is IPv4-mapped; write it as an IPv4 prefix"},
	}
	for _, tc := range tests {
		_, err := Compile(nil, []netip.Prefix{tc.p})
		require.EqualError(t, err, "deny: "+tc.want)
		_, err = Compile([]netip.Prefix{tc.p}, nil)
		require.EqualError(t, err, "allow: "+tc.want)
	}
}

func TestMergeOverlappingAndAdjacent(t *testing.T) {
	s, err := NewSet(prefixes(t, "198.18.0.0/25", "198.18.0.128/25", "198.18.0.0/24", "198.18.1.0/24", "198.18.4.0/24",
		"2001:db8::/33", "2001:db8:8000::/33", "2001:db9:1::/48"))
	require.NoError(t, err)
	require.Equal(t, 4, s.Len()) // 198.18.0.0–198.18.1.255, 198.18.4.0/24, 2001:db8::/32, 2001:db9:1::/48
}

// randomPrefix draws a prefix from a small universe so that overlaps and
// adjacencies are common.
func randomPrefix(r *rand.Rand) netip.Prefix {
	if r.IntN(2) == 0 {
		b := [4]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(256))}
		return netip.PrefixFrom(netip.AddrFrom4(b), 16+r.IntN(17)).Masked()
	}
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
	b[4] = byte(r.IntN(4))
	b[15] = byte(r.IntN(256))
	b[8] = byte(r.IntN(256))
	return netip.PrefixFrom(netip.AddrFrom16(b), 32+r.IntN(97)).Masked()
}

func randomAddr(r *rand.Rand) netip.Addr {
	p := randomPrefix(r)
	b := p.Addr().AsSlice()
	b[len(b)-1] ^= byte(r.IntN(256))
	if r.IntN(3) == 0 {
		b[len(b)/2] ^= byte(r.IntN(256))
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TestAgainstLinearScan compares Set with the obvious definition.
func TestAgainstLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		ps := make([]netip.Prefix, r.IntN(40))
		for i := range ps {
			ps[i] = randomPrefix(r)
		}
		s, err := NewSet(ps)
		require.NoError(t, err)
		for range 200 {
			a := randomAddr(r)
			want := false
			for _, p := range ps {
				want = want || p.Contains(a)
			}
			require.Equal(t, want, s.Contains(a), "round %d: %s in %v", round, a, ps)
		}
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	l := bigList(t, 100_000)
	a := netip.MustParseAddr("198.18.3.77")
	allocs := testing.AllocsPerRun(100, func() { _ = l.Check(a) })
	require.Zero(t, allocs)
}

// bigList is n distinct /32 and /128 deny entries inside the lab ranges
// plus an allow list of the whole lab range.
func bigList(t testing.TB, n int) *List {
	deny := make([]netip.Prefix, 0, n)
	for i := range n {
		if i%2 == 0 {
			b := [4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)}
			deny = append(deny, netip.PrefixFrom(netip.AddrFrom4(b), 32))
			continue
		}
		var b [16]byte
		b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
		b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		deny = append(deny, netip.PrefixFrom(netip.AddrFrom16(b), 128))
	}
	l, err := Compile(prefixes(t, "198.18.0.0/15", "2001:db8::/32"), deny)
	require.NoError(t, err)
	return l
}

func FuzzSet(f *testing.F) {
	f.Add([]byte{198, 18, 0, 0, 24}, []byte{198, 18, 0, 7})
	f.Add([]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32}, []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, raw, addr []byte) {
		// raw is a sequence of (address, bits) records of 5 or 17 bytes.
		var ps []netip.Prefix
		for len(raw) >= 5 {
			n := 4
			if raw[0]&1 == 1 && len(raw) >= 17 {
				n = 16
			}
			a, _ := netip.AddrFromSlice(raw[:n])
			p, err := a.Prefix(int(raw[n]) % (n*8 + 1))
			raw = raw[n+1:]
			if err == nil && !p.Addr().Is4In6() {
				ps = append(ps, p)
			}
		}
		a, ok := netip.AddrFromSlice(addr)
		if !ok {
			return
		}
		s, err := NewSet(ps)
		if err != nil {
			t.Fatal(err)
		}
		want := false
		for _, p := range ps {
			want = want || p.Contains(a)
		}
		if got := s.Contains(a); got != want {
			t.Fatalf("%s in %v: got %v want %v", a, ps, got, want)
		}
	})
}

// BenchmarkCheck compares a lookup in a list of 100,000 prefixes with an
// empty list, side by side (go test -bench Check ./edge/acl).
func BenchmarkCheck(b *testing.B) {
	addrs := []netip.Addr{netip.MustParseAddr("198.18.3.77"), netip.MustParseAddr("2001:db8::1:2:3"), netip.MustParseAddr("198.19.200.1")}
	for _, tc := range []struct {
		name string
		l    *List
	}{{"none", nil}, {"100k", bigList(b, 100_000)}} {
		b.Run(tc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				_ = tc.l.Check(addrs[i%len(addrs)])
				i++
			}
		})
	}
}
