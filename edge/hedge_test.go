package edge_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/router"
)

// silentRegion reads stream headers and never answers: a region whose
// endpoint is black-holed, or that died without closing anything.
type silentRegion struct{}

func (silentRegion) ServeStream(ctx context.Context, _ backbone.Peer, s *quic.Stream) {
	h, err := wire.ReadHeader(s)
	if err == nil && h.Kind == wire.KindControl {
		// Answer the control stream so that the edge sees the region as up.
		_, _ = io.ReadFull(s, make([]byte, 1))
		_ = wire.WriteMsg(s, wire.MsgHealth, wire.Health{Full: true})
	}
	<-ctx.Done()
	s.CancelRead(wire.StreamShutdown)
	s.CancelWrite(wire.StreamShutdown)
}

// TestHedgeAroundSilentRegion: the preferred region never answers; the
// flow still succeeds through the other region after the hedge delay, well
// before the open timeout, and the flows after it avoid the silent
// endpoint altogether.
func TestHedgeAroundSilentRegion(t *testing.T) {
	e, port := startHedgeLab(t, edge.EarlyOff)
	require.NoError(t, echoOnce(net.JoinHostPort("127.0.0.1", itoa(port)), 1024))
	require.EqualValues(t, 1, e.Stats().Hedges)
	require.EqualValues(t, 0, failed(e))

	// The silent endpoint is now suspected: the next flows go straight to
	// the other region without waiting for a hedge.
	for range 3 {
		require.NoError(t, echoOnce(net.JoinHostPort("127.0.0.1", itoa(port)), 1024))
	}
	require.EqualValues(t, 1, e.Stats().Hedges, "later flows skip the suspected endpoint")
	require.EqualValues(t, 1, e.Stats().Retries)
}

// startHedgeLab runs an edge with two regions: "slow" (preferred) never
// answers, "good" serves an echo endpoint. The hedge delay is 50 ms.
func startHedgeLab(t *testing.T, mode edge.EarlyData) (*edge.Edge, uint16) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	p, err := pki.NewEphemeral("pop", "slow", "good")
	require.NoError(t, err)
	store := func(n string) *pki.Store {
		s, err := p.Store(n, nil)
		require.NoError(t, err)
		return s
	}
	port := freePort(t)
	echo := echoServer(t)
	ap := netip.MustParseAddrPort(echo)
	serve := func(name string, h backbone.Handler) string {
		srv, err := backbone.Listen(backbone.ServerConfig{
			Listen: "127.0.0.1:0",
			TLS:    pki.ServerConfig(store(name), func(n string) bool { return n == "pop" }, nil),
		}, h)
		require.NoError(t, err)
		wg.Go(func() { _ = srv.Serve(ctx) })
		return srv.Addr().String()
	}
	slowAddr := serve("slow", silentRegion{})
	goodAddr := serve("good", gateway.New(gateway.Config{Endpoints: []gateway.Endpoint{{
		ID: "good-1", Host: ap.Addr().String(), Port: ap.Port(), ListenerPorts: [][2]uint16{{port, port}},
	}}}))
	regions := edge.Regions{}
	for name, addr := range map[string]string{"slow": slowAddr, "good": goodAddr} {
		cl, err := backbone.NewClient(backbone.ClientConfig{Region: name, Addr: addr,
			TLS: pki.ClientConfig(store("pop"), name), Hello: backbone.Hello("pop", "test")})
		require.NoError(t, err)
		wg.Go(func() { _ = cl.Run(ctx) })
		regions[name] = cl
	}
	e, err := edge.New(edge.Config{
		Listeners: []edge.Listener{{
			Protocol: "tcp", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Ports:     []edge.PortRange{{From: port, To: port}},
			EarlyData: mode,
			Route: router.Listener{Key: "hedge", Groups: []router.Group{
				{Region: "slow", TrafficDial: 100, Preference: 1, Endpoints: []router.Endpoint{{ID: "slow-1", Weight: 1}}},
				{Region: "good", TrafficDial: 100, Preference: 2, Endpoints: []router.Endpoint{{ID: "good-1", Weight: 1}}},
			}},
		}},
		HedgeDelay: 50 * time.Millisecond,
	}, regions)
	require.NoError(t, err)
	require.NoError(t, e.Listen())
	wg.Go(func() { _ = e.Run(ctx) })
	for _, c := range regions {
		deadline := time.Now().Add(5 * time.Second)
		for !c.Reachable() {
			require.True(t, time.Now().Before(deadline), "backbone did not come up")
			time.Sleep(5 * time.Millisecond)
		}
	}

	return e, port
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
