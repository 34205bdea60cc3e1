package udp_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge/router"
	"github.com/anyedge/anyedge/edge/udp"
)

// holdRegion answers the control stream with an empty health view, and a
// UDP stream with OK only once release is closed; it never reads a UDP
// stream's packets.
type holdRegion struct {
	header  chan struct{} // closed when the first UDP header arrived
	once    sync.Once
	release chan struct{}
}

func (h *holdRegion) ServeStream(ctx context.Context, _ backbone.Peer, s *quic.Stream) {
	hdr, err := wire.ReadHeader(s)
	switch {
	case err != nil:
	case hdr.Kind == wire.KindControl:
		_, _ = io.ReadFull(s, make([]byte, 1))
		_ = wire.WriteMsg(s, wire.MsgHealth, wire.Health{Full: true})
	case hdr.Kind == wire.KindUDP:
		h.once.Do(func() { close(h.header) })
		select {
		case <-h.release:
			_, _ = s.Write([]byte{byte(wire.CodeOK)})
		case <-ctx.Done():
		}
	}
	<-ctx.Done()
	s.CancelRead(wire.StreamShutdown)
	s.CancelWrite(wire.StreamShutdown)
}

// blackHole relays UDP between one client (the edge's backbone socket)
// and target; once up is false, it drops what the client sends (counted)
// and still relays what target sends back.
type blackHole struct {
	conn    *net.UDPConn
	up      atomic.Bool
	dropped atomic.Int64
}

func startBlackHole(t *testing.T, target netip.AddrPort) *blackHole {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	back, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	require.NoError(t, err)
	b := &blackHole{conn: front}
	b.up.Store(true)
	var client atomic.Pointer[netip.AddrPort]
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = front.Close(); _ = back.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 1<<16)
		for {
			n, from, err := front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			client.Store(&from)
			if !b.up.Load() {
				b.dropped.Add(1)
				continue
			}
			_, _ = back.Write(buf[:n])
		}
	})
	wg.Go(func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			if c := client.Load(); c != nil {
				_, _ = front.WriteToUDPAddrPort(buf[:n], *c)
			}
		}
	})
	return b
}

// TestBlockedFlushHoldsNoLock: a new flow's queued packets are too large
// for datagrams and its stream write blocks (the backbone path went black
// right after the region's OK). The flow's lock is not held across that
// write: the socket's read loop still takes new flows while a packet of
// the blocked flow arrives, and closing the forwarder ends the blocked
// write instead of waiting for the backbone to time out.
func TestBlockedFlushHoldsNoLock(t *testing.T) {
	f := newFleet(t, "pop-1")
	store, err := f.p.Store(regionName, nil)
	require.NoError(t, err)
	h := &holdRegion{header: make(chan struct{}), release: make(chan struct{})}
	srv, err := backbone.Listen(backbone.ServerConfig{Listen: "127.0.0.1:0",
		TLS: pki.ServerConfig(store, func(string) bool { return true }, nil), IdleTimeout: time.Minute}, h)
	require.NoError(t, err)
	rctx, rcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { rcancel(); _ = srv.Close(); wg.Wait() })
	wg.Go(func() { _ = srv.Serve(rctx) })
	hole := startBlackHole(t, srv.Addr().(*net.UDPAddr).AddrPort())

	popStore, err := f.p.Store("pop-1", nil)
	require.NoError(t, err)
	// A long idle timeout: the black hole must outlast the test.
	cl, err := backbone.NewClient(backbone.ClientConfig{Region: regionName, Addr: hole.conn.LocalAddr().String(),
		TLS: pki.ClientConfig(popStore, regionName), Hello: backbone.Hello("pop-1", "test"),
		KeepAlivePeriod: time.Second, IdleTimeout: time.Minute})
	require.NoError(t, err)
	wg.Go(func() { _ = cl.Run(rctx) })
	port := freeUDPPort(t)
	fwd, err := udp.New(udp.Config{Listeners: []udp.Listener{{
		Accelerator: "test", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Ports: []udp.PortRange{{From: port, To: port}},
		Route: router.Listener{Key: "test/udp", Groups: []router.Group{{Region: regionName, TrafficDial: 100,
			Endpoints: []router.Endpoint{{ID: "e1", Weight: 1}}}}},
	}}}, udp.Regions{regionName: cl})
	require.NoError(t, err)
	require.NoError(t, fwd.Listen())
	wg.Go(func() { _ = fwd.Run(rctx) })
	waitFor(t, 5*time.Second, cl.Reachable, "backbone did not come up")
	edgeAddr := fwd.Addrs()[0].(*net.UDPAddr).AddrPort()

	a := dialClient(t, edgeAddr)
	big := bytes.Repeat([]byte("x"), 30000) // far over a datagram: the stream carries it
	for range udp.MaxPending {
		_, err := a.Write(big)
		require.NoError(t, err)
	}
	select {
	case <-h.header:
	case <-time.After(10 * time.Second):
		t.Fatal("the flow's header never reached the region")
	}
	waitFor(t, 10*time.Second, func() bool { return fwd.Stats().FromClient >= udp.MaxPending }, "the queued packets were not read")
	hole.up.Store(false)
	close(h.release)
	// The queue is ~2 MB: once tens of packets went into the hole, the
	// flush is blocked on the congestion window.
	waitFor(t, 10*time.Second, func() bool { return hole.dropped.Load() >= 40 }, "the flush did not start")

	_, err = a.Write([]byte("one more for the blocked flow"))
	require.NoError(t, err)
	b := dialClient(t, edgeAddr)
	_, err = b.Write([]byte("a new flow"))
	require.NoError(t, err)
	waitFor(t, 10*time.Second, func() bool { return fwd.Stats().Opened == 2 },
		"the read loop is stuck behind the blocked flow")

	closed := make(chan struct{})
	go func() { _ = fwd.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close waits on the blocked stream write")
	}
}
