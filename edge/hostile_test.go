package edge_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/router"
)

// TestClientProxyHeaderIsPayload: a client that sends a PROXY protocol v2
// header of its own, claiming another source, reaches an endpoint that
// asked for client IP preservation with the region's genuine header
// first (the client's real address), and its forged header after it, as
// payload the endpoint sees as data.
func TestClientProxyHeaderIsPayload(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	type seen struct {
		hdr  *proxyproto.Header
		rest []byte
	}
	got := make(chan seen, 1)
	serveEach(t, ln, func(c net.Conn) {
		r := bufio.NewReader(c)
		h, err := proxyproto.Read(r)
		if err != nil {
			got <- seen{}
			return
		}
		rest, _ := io.ReadAll(r)
		got <- seen{hdr: h, rest: rest}
	})
	ep := netip.MustParseAddrPort(ln.Addr().String())
	port := freePort(t)
	gw := gateway.New(gateway.Config{Endpoints: []gateway.Endpoint{{ID: "pp", Host: ep.Addr().String(), Port: ep.Port(),
		ListenerPorts: [][2]uint16{{port, port}}, ProxyProtocol: true}}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	cl, _ := regionClient(ctx, t, &wg, "pop-test", "region-test", gw, 0)
	e, err := edge.New(edge.Config{Listeners: []edge.Listener{{
		Protocol: "tcp", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Ports:     []edge.PortRange{{From: port, To: port}},
		EarlyData: edge.EarlyAlways, // the forged header even travels as early data
		Route: router.Listener{Key: "pp", Groups: []router.Group{{Region: "region-test", TrafficDial: 100,
			Endpoints: []router.Endpoint{{ID: "pp", Weight: 1}}}}},
	}}}, edge.Regions{"region-test": cl})
	require.NoError(t, err)
	require.NoError(t, e.Listen())
	wg.Go(func() { _ = e.Run(ctx) })
	waitReachable(t, cl)

	forged := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("198.18.66.6"), Port: 4444},
		&net.TCPAddr{IP: net.ParseIP("198.18.0.1"), Port: 80})
	fb, err := forged.Format()
	require.NoError(t, err)
	c, err := net.Dial("tcp", e.Addrs()[0].String())
	require.NoError(t, err)
	_, err = c.Write(append(fb, "GET / HTTP/1.0\r\n\r\n"...))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	var s seen
	select {
	case s = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the endpoint got nothing")
	}
	_ = c.Close()
	require.NotNil(t, s.hdr, "the endpoint got no genuine PROXY header")
	src := s.hdr.SourceAddr.(*net.TCPAddr)
	require.Equal(t, c.LocalAddr().(*net.TCPAddr).Port, src.Port, "the header names the real client")
	require.True(t, src.IP.IsLoopback(), "the header names the real client, not %s", src.IP)
	require.Equal(t, append(fb, "GET / HTTP/1.0\r\n\r\n"...), s.rest, "the forged header is payload")
}

// TestSilentClients: clients that connect and send nothing do not hold
// up their flows' setup (each is dialled through to the endpoint without
// waiting for a byte) and cost a bounded number of goroutines each; they
// end at the listener's idle timeout like any idle flow.
func TestSilentClients(t *testing.T) {
	const n = 50
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan struct{}, n)
	serveEach(t, ln, func(c net.Conn) {
		accepted <- struct{}{}
		_, _ = io.Copy(io.Discard, c)
	})
	m := flow.NewMeter(flow.Listener{Key: "test/tcp", Protocol: "tcp"}, nil)
	l := startLabWith(t, map[string]string{"quiet-1": ln.Addr().String()}, labOpts{meter: m, early: edge.EarlyTLS, idle: time.Second})
	before := runtime.NumGoroutine()
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", l.edgeAddr)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := range n {
		select {
		case <-accepted:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d silent clients reached the endpoint", i, n)
		}
	}
	require.EqualValues(t, n, m.Snapshot().Active)
	// Per flow: the edge's two copy loops, the endpoint's handler, the
	// region's copies; the test's own server goroutine. Well under ten.
	require.Less(t, (runtime.NumGoroutine()-before)/n, 10, "goroutines per silent flow")
	deadline := time.Now().Add(20 * time.Second)
	for m.Snapshot().Ended(flow.IdleTimeout) < n {
		require.True(t, time.Now().Before(deadline), "silent flows outlive the idle timeout")
		time.Sleep(10 * time.Millisecond)
	}
}
