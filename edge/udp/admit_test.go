package udp_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge/acl"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/flow"
)

func dialFrom(t *testing.T, src string, to netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, net.UDPAddrFromAddrPort(to))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestUDPAdmission: a UDP listener's deny list and new-flow rate refuse
// new flows at their first packet (acl_denied, rate_limited), before any
// backbone work; a flow taken before a stricter rule keeps working.
func TestUDPAdmission(t *testing.T) {
	list, err := acl.Compile(nil, []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")})
	require.NoError(t, err)
	_, _, e, _ := simple(t, false, edgeOpts{admission: admit.Rules{ACL: list, Rate: 0.001, Burst: 2}})
	m := e.fwd.Meters()[0]
	a := dialFrom(t, "127.0.0.1", e.addrs[0])
	require.True(t, roundTrip(a, []byte("first"), 3*time.Second))
	require.False(t, roundTrip(dialFrom(t, "127.0.0.9", e.addrs[0]), []byte("denied"), 300*time.Millisecond))
	require.Positive(t, m.Snapshot().Ended(flow.ACLDenied))
	b := dialFrom(t, "127.0.0.2", e.addrs[0])
	require.True(t, roundTrip(b, []byte("second of the /24"), 3*time.Second))
	c := dialFrom(t, "127.0.0.3", e.addrs[0])
	require.False(t, roundTrip(c, []byte("third of the /24"), 300*time.Millisecond), "past the burst of the source /24")
	require.Positive(t, m.Snapshot().Ended(flow.RateLimited))
	require.True(t, roundTrip(dialFrom(t, "127.0.1.1", e.addrs[0]), []byte("another /24"), 3*time.Second))

	deny, err := acl.Compile(nil, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	require.NoError(t, err)
	require.True(t, e.fwd.SetAdmission("test/udp", admit.Rules{ACL: deny}))
	require.True(t, roundTrip(a, []byte("an open flow is untouched"), 3*time.Second))
	require.Equal(t, int64(3), e.fwd.Stats().Flows)
}

// TestUDPRegionOverloaded: a region at its own flow cap answers a new UDP
// flow "overloaded"; with no other region the flow ends as
// region_overloaded after one attempt (no other endpoint of the region is
// tried), and the flow the region took keeps working.
func TestUDPRegionOverloaded(t *testing.T) {
	f := newFleet(t, "pop-1")
	echo := startEcho(t, false)
	port := freeUDPPort(t)
	m := &backbone.Metrics{}
	r := f.startRegionWith(t, "127.0.0.1:0", gateway.Config{Metrics: m,
		Endpoints: []gateway.Endpoint{gatewayEndpoint("echo-1", echo.addrPort(), port, false), gatewayEndpoint("echo-2", echo.addrPort(), port, false)},
		Limits:    gateway.Limits{MaxFlows: 1},
	})
	e := f.startEdge(t, "pop-1", r.addr(), edgeOpts{port: port, endpoints: []string{"echo-1", "echo-2"}})
	rec := recorded(t, e)
	a := dialFrom(t, "127.0.0.1", e.addrs[0])
	require.True(t, roundTrip(a, []byte("first"), 3*time.Second))
	b := dialFrom(t, "127.0.0.2", e.addrs[0])
	require.False(t, roundTrip(b, []byte("over the cap"), 300*time.Millisecond))
	waitFor(t, 10*time.Second, func() bool { return len(rec.all()) > 0 }, "no record of the refused flow")
	require.True(t, roundTrip(a, []byte("still served"), 3*time.Second))
	// One attempt per refused flow: the region's other endpoint was not
	// tried.
	waitFor(t, 10*time.Second, func() bool { return int64(len(rec.all())) == m.StreamsRefused()[wire.CodeOverloaded] },
		"a refused flow tried the overloaded region more than once")
	for _, r := range rec.all() {
		require.Equal(t, flow.RegionOverloaded, r.Reason)
	}
}
