package edge_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/router"
)

// namedEcho serves connections that first read one byte, answer with the
// endpoint's one-letter name, then echo everything.
func namedEcho(t *testing.T, name byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveEach(t, ln, func(c net.Conn) {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return
		}
		if _, err := c.Write([]byte{name}); err != nil {
			return
		}
		_, _ = io.Copy(c, c)
	})
	return ln.Addr().String()
}

// reloadLab is an edge with one listener on two ports' worth of choice
// and a region with endpoints "a" and "b".
type reloadLab struct {
	e      *edge.Edge
	gw     *gateway.Gateway
	regs   edge.Regions
	rec    *records
	meter  *flow.Meter
	port   uint16
	epA    string
	epB    string
	cancel func()
}

func startReloadLab(t *testing.T) *reloadLab {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	l := &reloadLab{epA: namedEcho(t, 'a'), epB: namedEcho(t, 'b'), port: freePort(t), rec: newRecords(), cancel: cancel}
	var geps []gateway.Endpoint
	for id, addr := range map[string]string{"a": l.epA, "b": l.epB} {
		ap := netip.MustParseAddrPort(addr)
		geps = append(geps, gateway.Endpoint{ID: id, Host: ap.Addr().String(), Port: ap.Port(),
			ListenerPorts: [][2]uint16{{1, 65535}}})
	}
	l.gw = gateway.New(gateway.Config{Endpoints: geps, DialTimeout: time.Second})
	cl, _ := regionClient(ctx, t, &wg, "pop-test", "region-test", l.gw, 0)
	l.regs = edge.Regions{"region-test": cl}
	l.meter = flow.NewMeter(flow.Listener{Key: "test/tcp", Accelerator: "test", Protocol: "tcp"}, l.rec)
	var err error
	l.e, err = edge.New(edge.Config{Node: "pop-test", Listeners: []edge.Listener{l.listener(l.port, 128, 128)}}, l.regs)
	require.NoError(t, err)
	require.NoError(t, l.e.Listen())
	wg.Go(func() { _ = l.e.Run(ctx) })
	waitReachable(t, cl)
	return l
}

// listener is the lab's listener on port with the weights of a and b (a
// negative weight leaves the endpoint out).
func (l *reloadLab) listener(port uint16, wa, wb int) edge.Listener {
	g := router.Group{Region: "region-test", TrafficDial: 100}
	if wa >= 0 {
		g.Endpoints = append(g.Endpoints, router.Endpoint{ID: "a", Weight: uint8(wa)})
	}
	if wb >= 0 {
		g.Endpoints = append(g.Endpoints, router.Endpoint{ID: "b", Weight: uint8(wb)})
	}
	return edge.Listener{
		Accelerator: "test", Protocol: "tcp",
		Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Ports: []edge.PortRange{{From: port, To: port}},
		Meter: l.meter,
		Route: router.Listener{Key: "test/tcp", Groups: []router.Group{g}},
	}
}

// reload prepares and commits listeners.
func (l *reloadLab) reload(t *testing.T, listeners ...edge.Listener) edge.Changes {
	t.Helper()
	u, err := l.e.Prepare(listeners, l.regs)
	require.NoError(t, err)
	return u.Commit()
}

// openFlows opens n flows through port and returns them by the endpoint
// that serves each.
func openFlows(t *testing.T, port uint16, n int) map[byte][]*net.TCPConn {
	t.Helper()
	out := map[byte][]*net.TCPConn{}
	for range n {
		c := dial(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String())
		_, err := c.Write([]byte("?"))
		require.NoError(t, err)
		var b [1]byte
		_, err = io.ReadFull(c, b[:])
		require.NoError(t, err)
		out[b[0]] = append(out[b[0]], c)
	}
	return out
}

// alive checks that c still echoes.
func alive(c *net.TCPConn) error {
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	_, err := io.ReadFull(c, buf)
	return err
}

// TestReloadWeightsKeepFlows: a reload that changes weights (b drained)
// cuts no flow, and new flows follow the new weights at once.
func TestReloadWeightsKeepFlows(t *testing.T) {
	l := startReloadLab(t)
	flows := openFlows(t, l.port, 16)
	require.NotEmpty(t, flows['a'])
	require.NotEmpty(t, flows['b'], "16 flows all hashed to a")
	ch := l.reload(t, l.listener(l.port, 200, 0))
	require.Empty(t, ch.Added)
	require.Empty(t, ch.Removed)
	require.Zero(t, ch.Cut[flow.EndpointRemoved]+ch.Cut[flow.ListenerRemoved])
	for _, cs := range flows {
		for _, c := range cs {
			require.NoError(t, alive(c), "a flow died across a weight change")
		}
	}
	for range 8 {
		require.Empty(t, openFlows(t, l.port, 1)['b'], "b has weight 0 after the reload")
	}
	require.Empty(t, l.rec.waitN(t, 0), "a flow ended")
}

// TestReloadRemovesEndpoint: removing b cuts b's flows (endpoint_removed)
// and only them.
func TestReloadRemovesEndpoint(t *testing.T) {
	l := startReloadLab(t)
	flows := openFlows(t, l.port, 16)
	require.NotEmpty(t, flows['a'])
	require.NotEmpty(t, flows['b'], "16 flows all hashed to a")
	ch := l.reload(t, l.listener(l.port, 128, -1))
	require.Equal(t, len(flows['b']), ch.Cut[flow.EndpointRemoved])
	recs := l.rec.waitN(t, len(flows['b']))
	for _, r := range recs {
		require.Equal(t, flow.EndpointRemoved, r.Reason)
		require.Equal(t, "b", r.Endpoint)
	}
	for _, c := range flows['b'] {
		require.Error(t, alive(c), "a flow to the removed endpoint still works")
	}
	for _, c := range flows['a'] {
		require.NoError(t, alive(c), "a flow to a kept endpoint died")
	}
	require.Equal(t, len(flows['b']), l.rec.count())
	require.Equal(t, uint64(len(flows['b'])), l.meter.Snapshot().Ended(flow.EndpointRemoved))
}

// TestReloadListenerAddedAndRemoved: a reload that moves the listener to
// another port binds the new port before closing the old one; flows taken
// on the old port end with listener_removed.
func TestReloadListenerAddedAndRemoved(t *testing.T) {
	l := startReloadLab(t)
	old := openFlows(t, l.port, 4)
	port2 := freePort(t)
	ch := l.reload(t, l.listener(l.port, 128, 128), l.listener(port2, 128, 128))
	require.Len(t, ch.Added, 1)
	require.Empty(t, ch.Removed)
	require.NotEmpty(t, openFlows(t, port2, 2))
	for _, cs := range old {
		for _, c := range cs {
			require.NoError(t, alive(c))
		}
	}
	ch = l.reload(t, l.listener(port2, 128, 128))
	require.Len(t, ch.Removed, 1)
	n := len(old['a']) + len(old['b'])
	require.Equal(t, n, ch.Cut[flow.ListenerRemoved])
	for _, r := range l.rec.waitN(t, n) {
		require.Equal(t, flow.ListenerRemoved, r.Reason)
	}
	_, err := net.DialTimeout("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), l.port).String(), time.Second)
	require.Error(t, err, "the removed port still accepts")
	require.NotEmpty(t, openFlows(t, port2, 2))
	require.Len(t, l.e.Addrs(), 1)
}

// TestReloadBindFailureChangesNothing: a reload whose new port cannot be
// bound fails in Prepare and leaves the edge as it was.
func TestReloadBindFailureChangesNothing(t *testing.T) {
	l := startReloadLab(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	busyPort := uint16(busy.Addr().(*net.TCPAddr).Port)
	port2 := freePort(t)
	_, err = l.e.Prepare([]edge.Listener{l.listener(port2, 128, 128), l.listener(busyPort, 128, 128)}, l.regs)
	require.Error(t, err)
	ln, err := net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port2).String())
	require.NoError(t, err, "a failed Prepare left a port bound")
	_ = ln.Close()
	require.NotEmpty(t, openFlows(t, l.port, 2))
}

// TestRegionRemovesEndpoint: when the endpoint's region reloads first, it
// resets the flows' streams with StreamEndpointRemoved, and the edge ends
// them as endpoint_removed too.
func TestRegionRemovesEndpoint(t *testing.T) {
	l := startReloadLab(t)
	flows := openFlows(t, l.port, 16)
	require.NotEmpty(t, flows['b'], "16 flows all hashed to a")
	ap := netip.MustParseAddrPort(l.epA)
	require.Equal(t, len(flows['b']), l.gw.SetEndpoints([]gateway.Endpoint{{ID: "a", Host: ap.Addr().String(), Port: ap.Port(),
		ListenerPorts: [][2]uint16{{1, 65535}}}}))
	for _, r := range l.rec.waitN(t, len(flows['b'])) {
		require.Equal(t, flow.EndpointRemoved, r.Reason)
		require.Equal(t, "b", r.Endpoint)
	}
	for _, c := range flows['a'] {
		require.NoError(t, alive(c))
	}
}
