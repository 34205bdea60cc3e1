package udp_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/router"
	"github.com/anyedge/anyedge/edge/udp"
)

// reloadListener is the lab listener on port routing to the endpoints ids
// (weight 128 each).
func reloadListener(port uint16, meter *flow.Meter, ids ...string) udp.Listener {
	var reps []router.Endpoint
	for _, id := range ids {
		reps = append(reps, router.Endpoint{ID: id, Weight: 128})
	}
	return udp.Listener{
		Accelerator: "test",
		Addrs:       []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Ports:       []udp.PortRange{{From: port, To: port}},
		Meter:       meter,
		Route: router.Listener{Key: "test/udp", Groups: []router.Group{{
			Region: regionName, TrafficDial: 100, Endpoints: reps}}},
	}
}

// TestUDPReload: across a reload that changes nothing for them, UDP flows
// keep their endpoint socket; removing an endpoint ends its flows
// (endpoint_removed); moving the listener to another port binds the new
// one and ends the old port's flows (listener_removed).
func TestUDPReload(t *testing.T) {
	f := newFleet(t, "pop-a")
	port := freeUDPPort(t)
	e1, e2 := startEcho(t, false), startEcho(t, false)
	r := f.startRegion(t, "127.0.0.1:0", []gateway.Endpoint{
		{ID: "e1", Host: "127.0.0.1", Port: e1.addrPort().Port(), ListenerPorts: [][2]uint16{{1, 65535}}},
		{ID: "e2", Host: "127.0.0.1", Port: e2.addrPort().Port(), ListenerPorts: [][2]uint16{{1, 65535}}},
	})
	e := f.startEdge(t, "pop-a", r.addr(), edgeOpts{port: port, endpoints: []string{"e1", "e2"}})
	rec := recorded(t, e)
	m := e.fwd.Meters()[0]
	regions := udp.Regions{regionName: e.client}

	// Clients until both endpoints serve some.
	var clients []*net.UDPConn
	for len(e1.sourceList()) == 0 || len(e2.sourceList()) == 0 {
		require.Less(t, len(clients), 64, "64 flows all went to one endpoint")
		c := dialClient(t, e.addrs[0])
		require.True(t, roundTrip(c, []byte("hi"), 3*time.Second))
		clients = append(clients, c)
	}
	before := map[string]int{"e1": len(e1.sourceList()), "e2": len(e2.sourceList())}

	// The same listeners again, and the table limits: nothing moves.
	u, err := e.fwd.Prepare([]udp.Listener{reloadListener(port, m, "e1", "e2")}, regions)
	require.NoError(t, err)
	ch := u.Commit()
	require.Empty(t, ch.Added)
	require.Empty(t, ch.Removed)
	require.Empty(t, ch.Cut)
	for _, c := range clients {
		require.True(t, roundTrip(c, []byte("again"), 3*time.Second))
	}
	require.Equal(t, before, map[string]int{"e1": len(e1.sourceList()), "e2": len(e2.sourceList())},
		"a flow got a new endpoint socket across the reload")
	require.Empty(t, rec.all())

	// e2 removed.
	u, err = e.fwd.Prepare([]udp.Listener{reloadListener(port, m, "e1")}, regions)
	require.NoError(t, err)
	ch = u.Commit()
	require.Equal(t, before["e2"], ch.Cut[flow.EndpointRemoved])
	for _, r := range rec.wait(t, before["e2"]) {
		require.Equal(t, flow.EndpointRemoved, r.Reason)
		require.Equal(t, "e2", r.Endpoint)
	}
	for _, c := range clients {
		require.True(t, roundTrip(c, []byte("after"), 3*time.Second))
	}
	// e2's clients made new flows, to e1; e1's own kept their sockets.
	require.Equal(t, before["e1"]+before["e2"], len(e1.sourceList()), "a flow of e1 got a new endpoint socket")

	// The listener moves to port2.
	port2 := freeUDPPort(t)
	u, err = e.fwd.Prepare([]udp.Listener{reloadListener(port2, m, "e1")}, regions)
	require.NoError(t, err)
	ch = u.Commit()
	require.Len(t, ch.Added, 1)
	require.Len(t, ch.Removed, 1)
	require.Equal(t, len(clients), ch.Cut[flow.ListenerRemoved])
	got := rec.wait(t, before["e2"]+len(clients))
	for _, r := range got[before["e2"]:] {
		require.Equal(t, flow.ListenerRemoved, r.Reason)
	}
	c := dialClient(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port2))
	require.True(t, roundTrip(c, []byte("new port"), 3*time.Second))
	require.Len(t, e.fwd.Addrs(), 1)
	require.Equal(t, int(port2), e.fwd.Addrs()[0].(*net.UDPAddr).Port)
}

// TestUDPRegionRemovesEndpoint: when the region's reload removes an
// endpoint first, it resets the flow's stream with StreamEndpointRemoved
// and the edge ends the flow as endpoint_removed instead of reopening it.
func TestUDPRegionRemovesEndpoint(t *testing.T) {
	f := newFleet(t, "pop-a")
	port := freeUDPPort(t)
	e1 := startEcho(t, false)
	gep := gateway.Endpoint{ID: "e1", Host: "127.0.0.1", Port: e1.addrPort().Port(), ListenerPorts: [][2]uint16{{1, 65535}}}
	r := f.startRegion(t, "127.0.0.1:0", []gateway.Endpoint{gep})
	e := f.startEdge(t, "pop-a", r.addr(), edgeOpts{port: port, endpoints: []string{"e1"}})
	rec := recorded(t, e)
	c := dialClient(t, e.addrs[0])
	require.True(t, roundTrip(c, []byte("hi"), 3*time.Second))
	require.Equal(t, 1, r.gw.SetEndpoints(nil))
	got := rec.wait(t, 1)
	require.Equal(t, flow.EndpointRemoved, got[0].Reason)
	require.Equal(t, "e1", got[0].Endpoint)
}
