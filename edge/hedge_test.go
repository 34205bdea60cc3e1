package edge_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/flow"
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
// answers, "good" serves an echo endpoint. The hedge delay is the
// production default (200 ms): the tests count hedges, and a good region
// that a busy machine keeps from answering within a shorter one would be
// hedged too.
func startHedgeLab(t *testing.T, mode edge.EarlyData) (*edge.Edge, uint16) {
	t.Helper()
	port := freePort(t)
	echo := netip.MustParseAddrPort(echoServer(t))
	e, _ := startRegionsLab(t, port, mode, []labRegion{
		{name: "slow", handler: silentRegion{}, endpoints: []string{"slow-1"}},
		{name: "good", handler: echoGateway(port, map[string]netip.AddrPort{"good-1": echo}), endpoints: []string{"good-1"}},
	}, func(c *edge.Config) { c.HedgeDelay = 200 * time.Millisecond })
	return e, port
}

// labRegion is one region of startRegionsLab, in order of preference.
type labRegion struct {
	name    string
	handler backbone.Handler
	// endpoints are the group's endpoint IDs.
	endpoints []string
	// cut, if set, puts a cutRelay on the region's backbone.
	cut *atomic.Bool
}

// echoGateway is a region gateway whose endpoints (ID → address) serve
// listener port port.
func echoGateway(port uint16, eps map[string]netip.AddrPort) *gateway.Gateway {
	var geps []gateway.Endpoint
	for id, ap := range eps {
		geps = append(geps, gateway.Endpoint{ID: id, Host: ap.Addr().String(), Port: ap.Port(),
			ListenerPorts: [][2]uint16{{port, port}}})
	}
	return gateway.New(gateway.Config{Endpoints: geps})
}

// startRegionsLab runs an edge on port with one TCP listener whose groups
// are regions (preference in slice order, weight 1 each), every region
// served on 127.0.0.1 over the real backbone, hedge delay 50 ms; flows
// are recorded.
func startRegionsLab(t *testing.T, port uint16, mode edge.EarlyData, regs []labRegion, opts ...func(*edge.Config)) (*edge.Edge, *records) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	names := []string{"pop"}
	for _, r := range regs {
		names = append(names, r.name)
	}
	p, err := pki.NewEphemeral(names...)
	require.NoError(t, err)
	store := func(n string) *pki.Store {
		s, err := p.Store(n, nil)
		require.NoError(t, err)
		return s
	}
	regions := edge.Regions{}
	var groups []router.Group
	for i, r := range regs {
		srv, err := backbone.Listen(backbone.ServerConfig{
			Listen: "127.0.0.1:0",
			TLS:    pki.ServerConfig(store(r.name), func(n string) bool { return n == "pop" }, nil),
		}, r.handler)
		require.NoError(t, err)
		wg.Go(func() { _ = srv.Serve(ctx) })
		addr := srv.Addr().String()
		if r.cut != nil {
			addr = cutRelay(t, addr, 0, r.cut)
		}
		cl, err := backbone.NewClient(backbone.ClientConfig{Region: r.name, Addr: addr,
			TLS: pki.ClientConfig(store("pop"), r.name), Hello: backbone.Hello("pop", "test")})
		require.NoError(t, err)
		wg.Go(func() { _ = cl.Run(ctx) })
		regions[r.name] = cl
		g := router.Group{Region: r.name, TrafficDial: 100, Preference: i + 1}
		for _, id := range r.endpoints {
			g.Endpoints = append(g.Endpoints, router.Endpoint{ID: id, Weight: 1})
		}
		groups = append(groups, g)
	}
	rec := newRecords()
	cfg := edge.Config{
		Listeners: []edge.Listener{{
			Protocol: "tcp", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Ports:     []edge.PortRange{{From: port, To: port}},
			EarlyData: mode,
			Meter:     flow.NewMeter(flow.Listener{Key: "hedge", Protocol: "tcp"}, rec),
			Route:     router.Listener{Key: "hedge", Groups: groups},
		}},
		HedgeDelay: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	e, err := edge.New(cfg, regions)
	require.NoError(t, err)
	require.NoError(t, e.Listen())
	ectx, ecancel := context.WithCancel(ctx)
	var ewg sync.WaitGroup
	ewg.Go(func() { _ = e.Run(ectx) })
	t.Cleanup(func() {
		// Run joins every goroutine it started: attempts and the release
		// of hedging's losers included, not only the flows.
		ecancel()
		ewg.Wait()
		require.Empty(t, edgeGoroutines(), "goroutines of the edge outlived Run")
	})
	for _, c := range regions {
		waitReachable(t, c)
	}
	return e, rec
}

// TestHedgeSkipsSilentRegion: when a whole region falls silent (its
// backbone black-holed: no answer, no acknowledgement), the first hedge of
// a flow goes to the next region, not to another endpoint of the silent
// one, and the next flows try the other region first until the silent one
// speaks again.
func TestHedgeSkipsSilentRegion(t *testing.T) {
	port := freePort(t)
	eps := func(ids ...string) map[string]netip.AddrPort {
		m := map[string]netip.AddrPort{}
		for _, id := range ids {
			m[id] = netip.MustParseAddrPort(echoServer(t))
		}
		return m
	}
	var cut atomic.Bool
	e, rec := startRegionsLab(t, port, edge.EarlyOff, []labRegion{
		{name: "near", handler: echoGateway(port, eps("near-1", "near-2")), endpoints: []string{"near-1", "near-2"}, cut: &cut},
		{name: "far", handler: echoGateway(port, eps("far-1")), endpoints: []string{"far-1"}},
	})
	addr := net.JoinHostPort("127.0.0.1", itoa(port))
	flowTo := func() string {
		t.Helper()
		n := rec.count()
		require.NoError(t, echoOnce(addr, 64))
		return rec.waitN(t, n+1)[n].Region
	}
	require.Equal(t, "near", flowTo())

	cut.Store(true)
	require.Equal(t, "far", flowTo())
	st := e.Stats()
	require.EqualValues(t, 1, st.Hedges, "one hedge: straight to the next region")
	require.EqualValues(t, 1, st.Retries, "the silent region's other endpoint was not tried")

	// While near stays silent, new flows go to far without a hedge.
	for range 3 {
		require.Equal(t, "far", flowTo())
	}
	require.EqualValues(t, 1, e.Stats().Hedges)

	// near speaks again (before the backbone declares it dead): flows
	// return to it.
	cut.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for flowTo() != "near" {
		require.True(t, time.Now().Before(deadline), "flows never returned to the region that spoke again")
	}
	require.EqualValues(t, 0, failed(e))
}

// edgeGoroutines returns the stacks of running goroutines that are in
// the edge's code, looked at once (no retry: a goroutine Run has joined is
// gone by the time Run returns).
func edgeGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "anyedge/edge.(*Edge)") && !strings.Contains(g, "edgeGoroutines") {
			out = append(out, g)
		}
	}
	return out
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
