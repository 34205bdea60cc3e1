package admit_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/edge/acl"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/flow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Unix(1_700_000_000, 0)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestACL(t *testing.T) {
	l, err := acl.Compile([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/16"), netip.MustParsePrefix("2001:db8::/32")},
		[]netip.Prefix{netip.MustParsePrefix("198.18.7.0/24")})
	require.NoError(t, err)
	g := admit.NewGate(admit.Rules{ACL: l}, nil, 0)
	for _, tc := range []struct {
		src  string
		want flow.Reason
	}{
		{"198.18.1.1", 0}, {"::ffff:198.18.1.1", 0}, {"2001:db8::1", 0},
		{"198.18.7.9", flow.ACLDenied}, {"203.0.113.1", flow.ACLDenied}, {"2001:db9::1", flow.ACLDenied},
	} {
		p, r := g.Admit(addr(tc.src), t0)
		require.Equal(t, tc.want, r, tc.src)
		p.Done()
	}
	require.Zero(t, g.Flows())
}

func TestRatePerPrefix(t *testing.T) {
	g := admit.NewGate(admit.Rules{Rate: 10, Burst: 3}, nil, 0)
	take := func(src string, at time.Time) flow.Reason {
		p, r := g.Admit(addr(src), at)
		p.Done()
		return r
	}
	for i := range 3 {
		require.Zero(t, take("198.18.1.1", t0), "burst %d", i)
	}
	require.Equal(t, flow.RateLimited, take("198.18.1.200", t0), "same /24: same bucket")
	require.Zero(t, take("198.18.2.1", t0), "another /24")
	require.Zero(t, take("198.18.1.1", t0.Add(100*time.Millisecond)), "one token back after 1/rate")
	require.Equal(t, flow.RateLimited, take("198.18.1.1", t0.Add(100*time.Millisecond)))
	for i := range 3 {
		require.Zero(t, take("2001:db8:0:1::1", t0), "v6 burst %d", i)
	}
	require.Equal(t, flow.RateLimited, take("2001:db8:0:1:ffff::9", t0), "same /64")
	require.Zero(t, take("2001:db8:0:2::1", t0), "another /64")
	require.Equal(t, 3, g.Rules().Burst)
}

// TestBucketsBounded: a flood of sources, each a new prefix, never holds
// more buckets than the table's size.
func TestBucketsBounded(t *testing.T) {
	const size = 1000
	g := admit.NewGate(admit.Rules{Rate: 1}, nil, size)
	for i := range 20_000 {
		a := netip.AddrFrom4([4]byte{byte(i >> 16), byte(i >> 8), byte(i), 1})
		p, r := g.Admit(a, t0)
		if r != 0 {
			t.Fatalf("source %d refused: %s", i, r)
		}
		p.Done()
		if g.Buckets() > size {
			t.Fatalf("%d buckets after %d sources", g.Buckets(), i+1)
		}
	}
	// A source seen within the last generation keeps its (empty) bucket.
	p, r := g.Admit(addr("0.78.31.9"), t0) // the flood's last /24: 19999 = 0x4e1f
	require.Equal(t, flow.RateLimited, r)
	p.Done()
}

func TestCaps(t *testing.T) {
	global := admit.NewGlobal(3)
	a := admit.NewGate(admit.Rules{MaxFlows: 2, MaxFlowsPerSource: 1}, global, 0)
	b := admit.NewGate(admit.Rules{}, global, 0)
	p1, r := a.Admit(addr("198.18.0.1"), t0)
	require.Zero(t, r)
	_, r = a.Admit(addr("198.18.0.1"), t0)
	require.Equal(t, flow.SourceLimit, r)
	p2, r := a.Admit(addr("198.18.0.2"), t0)
	require.Zero(t, r)
	_, r = a.Admit(addr("198.18.0.3"), t0)
	require.Equal(t, flow.ConnLimit, r, "the listener's cap")
	p3, r := b.Admit(addr("198.18.0.3"), t0)
	require.Zero(t, r)
	_, r = b.Admit(addr("198.18.0.4"), t0)
	require.Equal(t, flow.ConnLimit, r, "the process's cap")
	require.EqualValues(t, 3, global.Conns())
	p1.Done()
	p4, r := a.Admit(addr("198.18.0.1"), t0)
	require.Zero(t, r, "a flow that ended gives its share back")
	for _, p := range []admit.Pass{p2, p3, p4} {
		p.Done()
	}
	require.Zero(t, global.Conns())
	require.Zero(t, a.Flows())
	require.Zero(t, b.Flows())

	// New rules apply to new flows; the counts carry over.
	hold, _ := a.Admit(addr("198.18.0.9"), t0)
	a.SetRules(admit.Rules{MaxFlows: 1})
	_, r = a.Admit(addr("198.18.0.10"), t0)
	require.Equal(t, flow.ConnLimit, r)
	hold.Done()

	var none *admit.Gate
	p, r := none.Admit(addr("198.18.0.1"), t0)
	require.Zero(t, r)
	p.Done()
}
