package dns

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestRRL: past the rate a client prefix gets nothing but every second
// limited answer, sent empty with TC (slip); dig then gets its answer over
// TCP, which is never limited; the bucket refills with time; other kinds
// of answer and other prefixes have their own accounts.
func TestRRL(t *testing.T) {
	needDig(t)
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	s := startServer(t, testZoneConfig(), Config{Now: clock.now,
		RRL: RRLConfig{ResponsesPerSecond: 5, Slip: 2, IPv4PrefixLen: 24, IPv6PrefixLen: 56}})
	ap := s.Addrs()[0]
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	ask := func(name string) (*dns.Msg, error) {
		q := new(dns.Msg).SetQuestion(name, dns.TypeA)
		r, _, err := c.Exchange(q, ap.String())
		return r, err
	}
	for i := range 5 {
		r, err := ask("web.accel.example.net.")
		require.NoError(t, err, "answer %d is within the rate", i)
		require.Len(t, r.Answer, 2)
	}
	_, err := ask("web.accel.example.net.")
	var ne net.Error
	require.ErrorAs(t, err, &ne, "the 6th answer is dropped")
	require.True(t, ne.Timeout())
	r, err := ask("web.accel.example.net.")
	require.NoError(t, err, "the 7th slips")
	require.True(t, r.Truncated)
	require.Empty(t, r.Answer)

	// Another name is another account; NXDOMAINs share one.
	r, err = ask("api.eu.accel.example.net.")
	require.NoError(t, err)
	require.Len(t, r.Answer, 1)

	// dig: a limited answer slips (TC) and dig retries over TCP.
	_, err = ask("web.accel.example.net.") // limited #3: dropped
	require.ErrorAs(t, err, &ne)
	res := dig(t, s, "web.accel.example.net", "A") // limited #4: slips
	require.True(t, res.retried, res.out)
	require.Len(t, res.answer, 2, "answered over TCP")

	clock.advance(time.Second)
	r, err = ask("web.accel.example.net.")
	require.NoError(t, err, "the bucket refilled")
	require.Len(t, r.Answer, 2)

	st := s.Stats()
	require.EqualValues(t, 2, st.RRLDropped)
	require.EqualValues(t, 2, st.RRLSlipped)
}

// TestRRLAccounts checks the limiter alone: prefixes group clients, and a
// full table forgets accounts instead of growing.
func TestRRLAccounts(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	r := newRRL(RRLConfig{ResponsesPerSecond: 1, Slip: 0, IPv4PrefixLen: 24, IPv6PrefixLen: 56}, clock.now)
	a := netip.MustParseAddr("198.18.7.1")
	b := netip.MustParseAddr("198.18.7.200") // same /24
	other := netip.MustParseAddr("198.18.8.1")
	require.Equal(t, send, r.check(a, 10))
	require.Equal(t, drop, r.check(b, 10), "same /24 shares the account")
	require.Equal(t, send, r.check(other, 10))
	require.Equal(t, send, r.check(a, 11), "another kind")
	v6a := netip.MustParseAddr("2001:db8:0:ff01::1")
	v6b := netip.MustParseAddr("2001:db8:0:ff7f::2") // same /56
	require.Equal(t, send, r.check(v6a, 10))
	require.Equal(t, drop, r.check(v6b, 10))
	require.Equal(t, drop, r.check(netip.MustParseAddr("::ffff:198.18.7.9"), 10), "IPv4-mapped is IPv4")

	for i := range 3 * maxAccounts {
		r.check(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), 1}), uint64(i))
	}
	total := 0
	for i := range r.shards {
		total += len(r.shards[i].m)
	}
	require.LessOrEqual(t, total, maxAccounts)
}
