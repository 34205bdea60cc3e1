package backbone_test

import (
	"bufio"
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/wire"
)

// newerRegion speaks a future control protocol: before anything this edge
// knows, it sends message types the edge has never heard of.
type newerRegion struct {
	hello chan wire.Hello
}

func (n *newerRegion) ServeStream(ctx context.Context, _ backbone.Peer, s *quic.Stream) {
	defer s.CancelRead(wire.StreamShutdown)
	defer s.CancelWrite(wire.StreamShutdown)
	h, err := wire.ReadHeader(s)
	if err != nil || h.Kind != wire.KindControl {
		return
	}
	r := bufio.NewReader(s)
	t, body, err := wire.ReadMsg(r)
	if err != nil || t != wire.MsgHello {
		return
	}
	var hello wire.Hello
	if json.Unmarshal(body, &hello) == nil {
		n.hello <- hello
	}
	for _, m := range []struct {
		t wire.MsgType
		v any
	}{
		{200, map[string]any{"weights": []int{1, 2, 3}}},
		{201, "not even an object"},
		{wire.MsgHealth, wire.Health{Full: true, Endpoints: []wire.EndpointHealth{{ID: "a", Healthy: true}, {ID: "b"}}}},
		{202, nil},
		{wire.MsgLoad, wire.Load{ActiveFlows: 7}},
	} {
		if err := wire.WriteMsg(s, m.t, m.v); err != nil {
			return
		}
	}
	<-ctx.Done()
}

func TestEdgeSkipsUnknownControlMessages(t *testing.T) {
	l := newLab(t)
	nr := &newerRegion{hello: make(chan wire.Hello, 4)}
	srv := serveRegion(t, l, nr)

	c := l.startClient(t, edgeName, srv.Addr().String(), 1)
	waitLive(t, c, 1)
	select {
	case h := <-nr.hello:
		require.Equal(t, edgeName, h.Node)
		require.Equal(t, "test", h.Version)
		require.Equal(t, wire.ControlProto, h.Proto)
	case <-time.After(5 * time.Second):
		t.Fatal("no hello")
	}
	healthy, known := c.EndpointHealthy("a")
	require.True(t, healthy && known)
	healthy, known = c.EndpointHealthy("b")
	require.True(t, known)
	require.False(t, healthy)
	eventually(t, 5*time.Second, func() bool { l, ok := c.Load(); return ok && l.ActiveFlows == 7 },
		"the load after unknown messages was not kept")
	require.True(t, c.Reachable(), "unknown messages must not cost the connection")

	// This region speaks control protocol 1: it relays no fleet, and the
	// edge's state, which it never reads, costs nothing.
	c.SetEdgeState(wire.EdgeState{Epoch: 1, Seq: 1, Ready: []string{"web"}})
	_, relayed := c.Fleet()
	require.False(t, relayed)
	_, relayed = backbone.Regions{regionName: c}.Fleet()
	require.False(t, relayed)
	require.True(t, c.Reachable())
}

// probeCounter is a region that reads the edge's control messages and
// counts its RTT probes.
type probeCounter struct {
	probes chan struct{}
}

func (p *probeCounter) ServeStream(ctx context.Context, _ backbone.Peer, s *quic.Stream) {
	defer s.CancelRead(wire.StreamShutdown)
	defer s.CancelWrite(wire.StreamShutdown)
	h, err := wire.ReadHeader(s)
	if err != nil || h.Kind != wire.KindControl {
		return
	}
	if wire.WriteMsg(s, wire.MsgHealth, wire.Health{Full: true}) != nil {
		return
	}
	// The region speaks every second, as gateways do (its load), so QUIC
	// never sends a keep-alive PING of its own.
	quit := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(quit)
	wg.Go(func() {
		for {
			if wire.WriteMsg(s, wire.MsgLoad, wire.Load{}) != nil {
				return
			}
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	r := bufio.NewReader(s)
	for {
		t, _, err := wire.ReadMsg(r)
		if err != nil {
			return
		}
		if t == wire.MsgProbe {
			select {
			case p.probes <- struct{}{}:
			default:
			}
		}
	}
}

// TestIdleEdgeProbes: an edge with no flows keeps sending something its
// region acknowledges, so that its connection's RTT samples stay fresh
// (a path that grew longer while the edge was idle shows in the routing
// RTT and the hedge delay); the region skips the probes.
func TestIdleEdgeProbes(t *testing.T) {
	l := newLab(t)
	pc := &probeCounter{probes: make(chan struct{}, 8)}
	srv := serveRegion(t, l, pc)
	c := l.startClient(t, edgeName, srv.Addr().String(), 1)
	waitLive(t, c, 1)
	for range 2 {
		select {
		case <-pc.probes:
		case <-time.After(10 * time.Second):
			t.Fatal("an idle edge sent no RTT probe")
		}
	}
	require.True(t, c.Reachable())
}

// serveRegion runs a backbone server with handler h as the lab's region
// until the test ends.
func serveRegion(t *testing.T, l *lab, h backbone.Handler) *backbone.Server {
	t.Helper()
	srv, err := backbone.Listen(backbone.ServerConfig{
		Listen: "127.0.0.1:0",
		TLS:    pki.ServerConfig(l.store(t, regionName), func(n string) bool { return n == edgeName }, nil),
	}, h)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.NoError(t, <-done)
	})
	return srv
}
