package portmap_test

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/backbone/portmap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var update = flag.Bool("update", false, "rewrite the golden files")

// gameListener is a fixed configuration: two subnets of one region with
// two destination port ranges, and one subnet of another region that
// shares a CIDR with the first.
func gameListener() portmap.Listener {
	ports := []portmap.DestPorts{{From: 7000, To: 7001, Protos: portmap.TCP | portmap.UDP}, {From: 9000, To: 9000, Protos: portmap.UDP}}
	return portmap.Listener{
		Key: "game/custom/10000", Accelerator: "game",
		Ports: []portmap.PortRange{{From: 10000, To: 10999}, {From: 20000, To: 20999}},
		Subnets: []portmap.Subnet{
			{ID: "eu-a", Region: "eu", Prefix: netip.MustParsePrefix("10.1.0.0/28"), Base: 10000, Ports: ports},
			{ID: "eu-b", Region: "eu", Prefix: netip.MustParsePrefix("10.1.0.16/28"), Base: 10100, Ports: ports},
			{ID: "us-a", Region: "us", Prefix: netip.MustParsePrefix("10.1.0.0/28"), Base: 20000,
				Ports: []portmap.DestPorts{{From: 7000, To: 7000, Protos: portmap.TCP}}},
		},
	}
}

func compile(t testing.TB, l portmap.Listener) *portmap.Table {
	t.Helper()
	tab, err := portmap.Compile(l)
	require.NoError(t, err)
	return tab
}

func dump(tab *portmap.Table) string {
	var b strings.Builder
	for m := range tab.All {
		fmt.Fprintf(&b, "%d %s %s %s\n", m.ListenerPort, m.Dest, m.Protos, m.Subnet.ID)
	}
	return b.String()
}

// TestGolden pins the mapping of a fixed configuration: a change to the
// mapping function would move every matchmaker's ports.
func TestGolden(t *testing.T) {
	got := dump(compile(t, gameListener()))
	path := filepath.Join("testdata", "game.golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), got, "mapping differs from %s (go test -update rewrites it)", path)
	require.Contains(t, got, "10000 10.1.0.0:7000 tcp,udp eu-a\n")
	require.Contains(t, got, "10002 10.1.0.0:9000 udp eu-a\n")
	require.Contains(t, got, "10003 10.1.0.1:7000 tcp,udp eu-a\n")
	require.Contains(t, got, "10047 10.1.0.15:9000 udp eu-a\n")
}

// TestAddingSubnetMovesNothing inserts subnets before, between and after
// the existing ones (in list order and in port order) and removes one:
// every mapping of the others stays.
func TestAddingSubnetMovesNothing(t *testing.T) {
	base := gameListener()
	before := map[uint16]string{}
	for m := range compile(t, base).All {
		before[m.ListenerPort] = m.Dest.String() + " " + m.Subnet.ID
	}
	grown := gameListener()
	extra := []portmap.Subnet{
		{ID: "new-first", Region: "eu", Prefix: netip.MustParsePrefix("10.9.0.0/28"), Base: 10500, Ports: base.Subnets[0].Ports},
		{ID: "new-gap", Region: "eu", Prefix: netip.MustParsePrefix("10.9.1.0/28"), Base: 10048, Ports: base.Subnets[0].Ports},
	}
	grown.Subnets = append([]portmap.Subnet{extra[0]}, append(grown.Subnets[:1:1], append([]portmap.Subnet{extra[1]}, grown.Subnets[1:]...)...)...)
	after := compile(t, grown)
	for p, want := range before {
		m, ok := after.Forward(p)
		require.True(t, ok, "port %d", p)
		require.Equal(t, want, m.Dest.String()+" "+m.Subnet.ID, "port %d moved", p)
	}
	shrunk := gameListener()
	shrunk.Subnets = shrunk.Subnets[1:]
	for m := range compile(t, shrunk).All {
		require.Equal(t, before[m.ListenerPort], m.Dest.String()+" "+m.Subnet.ID)
	}
}

// TestReverseInvertsForward checks every port of the table both ways, and
// that a shared CIDR yields one mapping per subnet.
func TestReverseInvertsForward(t *testing.T) {
	tab := compile(t, gameListener())
	n := 0
	for m := range tab.All {
		n++
		got := tab.Reverse(m.Dest, nil)
		require.NotEmpty(t, got)
		found := false
		for _, r := range got {
			require.Equal(t, m.Dest, r.Dest)
			found = found || (r.ListenerPort == m.ListenerPort && r.Subnet.ID == m.Subnet.ID)
		}
		require.True(t, found, "reverse of %s misses port %d", m.Dest, m.ListenerPort)
		f, ok := tab.ForwardIn(m.Subnet.ID, m.ListenerPort)
		require.True(t, ok)
		require.Equal(t, m.Dest, f.Dest)
	}
	require.Equal(t, 16*3+16*3+16, n)
	got := tab.Reverse(netip.MustParseAddrPort("10.1.0.5:7000"), nil)
	require.Len(t, got, 2, "eu-a and us-a share 10.1.0.0/28")
	require.Empty(t, tab.Reverse(netip.MustParseAddrPort("10.1.0.5:7002"), nil), "not a destination port")
	require.Empty(t, tab.Reverse(netip.MustParseAddrPort("10.2.0.5:7000"), nil), "no subnet")
	_, ok := tab.Forward(10048)
	require.False(t, ok, "between blocks")
	_, ok = tab.Forward(9999)
	require.False(t, ok)
	_, ok = tab.ForwardIn("eu-b", 10000)
	require.False(t, ok, "a port of another subnet")
}

func TestCompileErrors(t *testing.T) {
	l := gameListener()
	l.Subnets[1].Base = 10047 // overlaps eu-a's last port
	_, err := portmap.Compile(l)
	require.ErrorContains(t, err, `subnets "eu-a" and "eu-b": ports 10000-10047 overlap 10047-10094`)

	l = gameListener()
	l.Subnets[0].Base = 10960 // 48 ports from 10960 run past 10999
	_, err = portmap.Compile(l)
	require.ErrorContains(t, err, `subnet "eu-a": ports 10960-11007 are not within one listener port range`)

	l = gameListener()
	l.Subnets[0].Prefix = netip.MustParsePrefix("10.1.0.1/28")
	_, err = portmap.Compile(l)
	require.ErrorContains(t, err, "not an IPv4 prefix without host bits")
}

func TestSize(t *testing.T) {
	one := []portmap.DestPorts{{From: 7777, To: 7777, Protos: portmap.UDP}}
	require.EqualValues(t, 32768, portmap.Size(netip.MustParsePrefix("10.0.0.0/17"), one))
	require.EqualValues(t, 65536, portmap.Size(netip.MustParsePrefix("10.0.0.0/16"), one), "a /16 needs one port more than exist")
	first, last := portmap.Block(1024, netip.MustParsePrefix("10.0.0.0/24"), []portmap.DestPorts{{From: 1, To: 10, Protos: portmap.TCP}})
	require.EqualValues(t, 1024, first)
	require.EqualValues(t, 1024+2560-1, last)
}

func TestRules(t *testing.T) {
	tab := compile(t, gameListener())
	d := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	r := portmap.NewRules([]*portmap.Table{tab}, map[string][]portmap.Grant{
		"eu-b": {{All: true}},
		"eu-a": {{Addrs: []netip.Addr{a("10.1.0.7")}, Ports: []uint16{7000}}},
	})
	require.False(t, r.Allowed("us-a", d("10.1.0.7:7000")), "denied by default")
	require.True(t, r.Allowed("eu-b", d("10.1.0.20:9000")), "allow_all")
	require.True(t, r.Allowed("eu-a", d("10.1.0.7:7000")))
	require.False(t, r.Allowed("eu-a", d("10.1.0.7:7001")))
	require.False(t, r.Allowed("nope", d("10.1.0.7:7000")))

	step := func(r *portmap.Rules, op portmap.Op) *portmap.Rules {
		t.Helper()
		out, err := r.Apply(op)
		require.NoError(t, err)
		return out
	}
	r2 := step(r, portmap.Op{Subnet: "eu-a", Allow: true, Grant: portmap.Grant{Addrs: []netip.Addr{a("10.1.0.8")}}})
	require.True(t, r2.Allowed("eu-a", d("10.1.0.8:9000")), "every port of the address")
	require.False(t, r.Allowed("eu-a", d("10.1.0.8:9000")), "the old snapshot is unchanged")
	r3 := step(r2, portmap.Op{Subnet: "eu-a", Grant: portmap.Grant{Addrs: []netip.Addr{a("10.1.0.8")}, Ports: []uint16{9000}}})
	require.False(t, r3.Allowed("eu-a", d("10.1.0.8:9000")), "a narrower deny wins")
	require.True(t, r3.Allowed("eu-a", d("10.1.0.8:7000")))
	r4 := step(r3, portmap.Op{Subnet: "eu-a", Grant: portmap.Grant{All: true}})
	require.False(t, r4.Allowed("eu-a", d("10.1.0.7:7000")), "deny all overrides the configuration")
	require.Equal(t, []portmap.Override{{Subnet: "eu-a", Allow: false}}, r4.Overrides(), "a broader op replaces narrower overrides")
	r5 := step(r4, portmap.Op{Subnet: "eu-a", Allow: true, Grant: portmap.Grant{Addrs: []netip.Addr{a("10.1.0.9")}, Ports: []uint16{7001}}})
	require.True(t, r5.Allowed("eu-a", d("10.1.0.9:7001")))
	require.False(t, r5.Allowed("eu-a", d("10.1.0.9:7000")))

	// An edge rebuilds the same rules from the overrides its region pushes.
	edge := r.WithOverrides(r5.Overrides())
	for m := range tab.All {
		require.Equal(t, r5.Allowed(m.Subnet.ID, m.Dest), edge.Allowed(m.Subnet.ID, m.Dest), "%s", m.Dest)
	}
	require.Equal(t, map[string][]netip.AddrPort{"eu-a": {d("10.1.0.9:7001")}}, r5.Explicit(), "the configured 10.1.0.7:7000 is denied now")
	require.Equal(t, map[string][]netip.AddrPort{"eu-a": {d("10.1.0.7:7000")}}, r.Explicit())

	for _, tc := range []struct {
		op   portmap.Op
		want string
	}{
		{portmap.Op{Subnet: "x", Grant: portmap.Grant{All: true}}, `unknown subnet "x"`},
		{portmap.Op{Subnet: "eu-a", Grant: portmap.Grant{Addrs: []netip.Addr{a("10.1.0.16")}}}, "address 10.1.0.16 is outside subnet eu-a (10.1.0.0/28)"},
		{portmap.Op{Subnet: "eu-a", Grant: portmap.Grant{Addrs: []netip.Addr{a("10.1.0.1")}, Ports: []uint16{7002}}}, "port 7002 is not a destination port of subnet eu-a"},
		{portmap.Op{Subnet: "eu-a"}, "name addresses, or all"},
		{portmap.Op{Subnet: "eu-a", Grant: portmap.Grant{All: true, Ports: []uint16{7000}}}, "all excludes addresses and ports"},
	} {
		_, err := r.Apply(tc.op)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestRulesBounded(t *testing.T) {
	big := portmap.Listener{Key: "k", Ports: []portmap.PortRange{{From: 1024, To: 65535}}, Subnets: []portmap.Subnet{
		{ID: "s", Prefix: netip.MustParsePrefix("10.0.0.0/17"), Base: 1024, Ports: []portmap.DestPorts{{From: 7777, To: 7777, Protos: portmap.UDP}}},
	}}
	r := portmap.NewRules([]*portmap.Table{compile(t, big)}, nil)
	var addrs []netip.Addr
	a := netip.MustParseAddr("10.0.0.0")
	for range portmap.MaxOverrides + 1 {
		addrs = append(addrs, a)
		a = a.Next()
	}
	_, err := r.Apply(portmap.Op{Subnet: "s", Allow: true, Grant: portmap.Grant{Addrs: addrs, Ports: []uint16{7777}}})
	require.ErrorIs(t, err, portmap.ErrTooMany)
	_, err = r.Apply(portmap.Op{Subnet: "s", Allow: true, Grant: portmap.Grant{Addrs: addrs[:portmap.MaxOverrides]}})
	require.NoError(t, err)
}

// BenchmarkReverse is a matchmaker's question, "which port reaches this
// server", against a /17 with 4 destination ports per address.
func BenchmarkReverse(b *testing.B) {
	big := portmap.Listener{Key: "k", Ports: []portmap.PortRange{{From: 1, To: 65535}}}
	for i := range 15 {
		big.Subnets = append(big.Subnets, portmap.Subnet{ID: fmt.Sprintf("s%d", i),
			Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 24), Base: uint16(1 + i*1024),
			Ports: []portmap.DestPorts{{From: 7000, To: 7003, Protos: portmap.UDP}}})
	}
	big.Subnets = append(big.Subnets, portmap.Subnet{ID: "wide", Prefix: netip.MustParsePrefix("10.128.0.0/20"), Base: 20000,
		Ports: []portmap.DestPorts{{From: 7000, To: 7003, Protos: portmap.UDP}}})
	tab := compile(b, big)
	dests := make([]netip.AddrPort, 0, 1024)
	for m := range tab.All {
		if len(dests) < cap(dests) && m.ListenerPort%61 == 0 {
			dests = append(dests, m.Dest)
		}
	}
	out := make([]portmap.Mapping, 0, 4)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		out = tab.Reverse(dests[i%len(dests)], out[:0])
		if len(out) != 1 {
			b.Fatal("no mapping")
		}
	}
}

// BenchmarkForward is the edge's per-flow lookup.
func BenchmarkForward(b *testing.B) {
	tab := compile(b, gameListener())
	b.ReportAllocs()
	for i := range b.N {
		if _, ok := tab.Forward(uint16(10000 + i%48)); !ok {
			b.Fatal("no mapping")
		}
	}
}
