package edge_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/router"
	"github.com/anyedge/anyedge/internal/testport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lab is one edge, one region and its endpoints, all in-process on
// 127.0.0.1 with real sockets and a real QUIC backbone.
type lab struct {
	edgeAddr string
	client   *backbone.Client
	edge     *edge.Edge
	region   *backbone.Server
	// stop ends the edge (and the backbone) and waits for it.
	stop func()
}

func freePort(t testing.TB) uint16 {
	return uint16(testport.Port(t))
}

func startLab(t testing.TB, endpoints map[string]string) *lab {
	t.Helper()
	return startLabWith(t, endpoints, labOpts{})
}

// labOpts vary a lab.
type labOpts struct {
	early edge.EarlyData // the listener's early-data mode
	// backboneDelay, when set, delays every backbone packet by this much
	// each way (a distant region).
	backboneDelay time.Duration
	// meter, when set, counts the listener's flows.
	meter *flow.Meter
	// idle is the listener's idle timeout (0: none).
	idle time.Duration
	// drained gives every endpoint weight 0 (no route).
	drained bool
	// admission is the listener's admission rules; maxConns the edge's
	// cap on connections.
	admission admit.Rules
	maxConns  int
}

// startLabWith is startLab with options.
func startLabWith(t testing.TB, endpoints map[string]string, o labOpts) *lab {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// The edge stops first and alone, as a node stops it (before its
	// backbone): its flows end as shutdown, not as a lost backbone.
	ectx, ecancel := context.WithCancel(ctx)
	var edgeDone chan struct{}
	stop := func() {
		ecancel()
		if edgeDone != nil {
			<-edgeDone
		}
		cancel()
		wg.Wait()
	}
	t.Cleanup(stop)
	weight := uint8(128)
	if o.drained {
		weight = 0
	}

	port := freePort(t)
	var geps []gateway.Endpoint
	var reps []router.Endpoint
	for id, addr := range endpoints {
		ap := netip.MustParseAddrPort(addr)
		geps = append(geps, gateway.Endpoint{ID: id, Host: ap.Addr().String(), Port: ap.Port(),
			ListenerPorts: [][2]uint16{{port, port}}})
		reps = append(reps, router.Endpoint{ID: id, Weight: weight})
	}
	gw := gateway.New(gateway.Config{Endpoints: geps, DialTimeout: time.Second})
	cl, srv := regionClient(ctx, t, &wg, "pop-test", "region-test", gw, o.backboneDelay)

	e, err := edge.New(edge.Config{
		Node: "pop-test",
		Listeners: []edge.Listener{{
			Accelerator: "test", Protocol: "tcp",
			Addrs:       []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Ports:       []edge.PortRange{{From: port, To: port}},
			EarlyData:   o.early,
			IdleTimeout: o.idle,
			Meter:       o.meter,
			Admission:   o.admission,
			Route:       router.Listener{Key: "test/tcp", Groups: []router.Group{{Region: "region-test", TrafficDial: 100, Endpoints: reps}}},
		}},
		MaxConns: o.maxConns,
	}, edge.Regions{"region-test": cl})
	require.NoError(t, err)
	require.NoError(t, e.Listen())
	edgeDone = make(chan struct{})
	wg.Go(func() { _ = e.Run(ectx); close(edgeDone) })

	waitReachable(t, cl)
	return &lab{edgeAddr: e.Addrs()[0].String(), client: cl, edge: e, region: srv, stop: stop}
}

// regionClient serves h as region on 127.0.0.1 over the real mutual-TLS
// backbone and returns a running client of pop to it; both run in wg
// until ctx ends. A delay > 0 puts a delayRelay between them.
func regionClient(ctx context.Context, t testing.TB, wg *sync.WaitGroup, pop, region string, h backbone.Handler, delay time.Duration) (*backbone.Client, *backbone.Server) {
	t.Helper()
	p, err := pki.NewEphemeral(pop, region)
	require.NoError(t, err)
	regionStore, err := p.Store(region, nil)
	require.NoError(t, err)
	popStore, err := p.Store(pop, nil)
	require.NoError(t, err)
	srv, err := backbone.Listen(backbone.ServerConfig{
		Listen: "127.0.0.1:0",
		TLS:    pki.ServerConfig(regionStore, func(n string) bool { return n == pop }, nil),
	}, h)
	require.NoError(t, err)
	wg.Go(func() { _ = srv.Serve(ctx) })
	addr := srv.Addr().String()
	if delay > 0 {
		addr = delayRelay(t, addr, delay)
	}
	cl, err := backbone.NewClient(backbone.ClientConfig{
		Region: region, Addr: addr,
		TLS: pki.ClientConfig(popStore, region), Hello: backbone.Hello(pop, "test"),
	})
	require.NoError(t, err)
	wg.Go(func() { _ = cl.Run(ctx) })
	return cl, srv
}

// waitReachable waits up to 5 s for cl's backbone to come up.
func waitReachable(t testing.TB, cl *backbone.Client) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cl.Reachable() {
		require.True(t, time.Now().Before(deadline), "backbone did not come up")
		time.Sleep(5 * time.Millisecond)
	}
}

// echoServer echoes everything and, after the client's FIN, appends the
// SHA-256 of what it received, then closes.
func echoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveEach(t, ln, func(c net.Conn) {
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(c, h), c); err != nil {
			return
		}
		_, _ = c.Write(h.Sum(nil))
	})
	return ln.Addr().String()
}

// serveEach runs handle for every connection ln accepts, then closes the
// connection; ln closes and every handler has returned at cleanup.
func serveEach(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
}

func TestEcho100x1MiB(t *testing.T) {
	l := startLab(t, map[string]string{"echo-1": echoServer(t), "echo-2": echoServer(t)})
	const conns, size = 100, 1 << 20
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for range conns {
		wg.Go(func() {
			errs <- echoOnce(l.edgeAddr, size)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func echoOnce(addr string, size int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	payload := make([]byte, size)
	_, _ = rand.Read(payload)
	sum := sha256.Sum256(payload)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if err := <-werr; err != nil {
		return err
	}
	if len(got) != size+sha256.Size {
		return errors.New("short echo")
	}
	if sha256.Sum256(got[:size]) != sum {
		return errors.New("echoed bytes differ")
	}
	if !bytes.Equal(got[size:], sum[:]) {
		return errors.New("endpoint received different bytes")
	}
	return nil
}

// TestHalfClose: the client's FIN reaches the endpoint, which answers after
// it; then the endpoint's FIN reaches the client while the client can still
// send.
func TestHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	serverDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverDone <- err
			return
		}
		defer c.Close()
		got, err := io.ReadAll(c) // returns at the client's FIN
		if err != nil || string(got) != "request" {
			serverDone <- errors.New("endpoint did not see request then FIN: " + string(got))
			return
		}
		_, _ = c.Write([]byte("answer after your FIN"))
		_ = c.(*net.TCPConn).CloseWrite()
		serverDone <- nil
	}()
	l := startLab(t, map[string]string{"ep": ln.Addr().String()})
	c, err := net.Dial("tcp", l.edgeAddr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("request"))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "answer after your FIN", string(got))
	require.NoError(t, <-serverDone)
}

// TestEndpointFINThenClientSends: the endpoint half-closes first; the
// client still sends and the endpoint still receives.
func TestEndpointFINThenClientSends(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte("hello"))
		_ = c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	l := startLab(t, map[string]string{"ep": ln.Addr().String()})
	c, err := net.Dial("tcp", l.edgeAddr)
	require.NoError(t, err)
	defer c.Close()
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "hello", string(b))
	_, err = c.Write([]byte("still talking"))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	require.Equal(t, "still talking", <-got)
}

// TestEndpointDownReset: a refused endpoint dial reaches the client as a
// reset, not as a FIN and not after a timeout.
func TestEndpointDownReset(t *testing.T) {
	l := startLab(t, map[string]string{"ep": refusingAddr(t)})
	c, err := net.Dial("tcp", l.edgeAddr)
	if err == nil {
		defer c.Close()
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err = c.Read(make([]byte, 1))
	}
	// The reset can be so prompt that it reaches the client before its
	// connect returns; either way it is a reset.
	require.True(t, errors.Is(err, syscall.ECONNRESET), "want a reset, got %v", err)
	deadline := time.Now().Add(5 * time.Second)
	for failed(l.edge) != 1 {
		require.True(t, time.Now().Before(deadline), "failed flow not counted")
		time.Sleep(time.Millisecond)
	}
}

// TestEndpointResetTravels: an endpoint that resets its connection resets
// the client's.
func TestEndpointResetTravels(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 4)
		_, _ = io.ReadFull(c, buf)
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
	}()
	l := startLab(t, map[string]string{"ep": ln.Addr().String()})
	c, err := net.Dial("tcp", l.edgeAddr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.True(t, errors.Is(err, syscall.ECONNRESET), "want a reset, got %v", err)
}

// refusingAddr returns an address whose port is bound but not listening, so
// connections to it are refused and nothing else can take the port.
func refusingAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// BenchmarkEcho1MiB compares a 1 MiB echo through anyedge (edge → QUIC →
// region → endpoint) with the same echo on a direct connection, side by
// side in one run.
func BenchmarkEcho1MiB(b *testing.B) {
	echo := echoServer(b)
	l := startLab(b, map[string]string{"echo": echo})
	for _, c := range []struct{ name, addr string }{{"direct", echo}, {"anyedge", l.edgeAddr}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(2 << 20)
			for b.Loop() {
				if err := echoOnce(c.addr, 1<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// delayRelay forwards UDP between its clients and target, delaying every
// packet by oneWay in each direction: a distant region on loopback. It
// stops at cleanup.
func delayRelay(t testing.TB, target string, oneWay time.Duration) string {
	t.Helper()
	return cutRelay(t, target, oneWay, nil)
}

// cutRelay is delayRelay that drops every packet, both ways, while cut
// (if not nil) is set: a region or path that fell silent without a word.
func cutRelay(t testing.TB, target string, oneWay time.Duration, cut *atomic.Bool) string {
	t.Helper()
	dst, err := net.ResolveUDPAddr("udp", target)
	require.NoError(t, err)
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	type packet struct {
		due time.Time
		b   []byte
		to  *net.UDPAddr
		via *net.UDPConn
	}
	// One queue for both directions: with a constant delay, due times
	// follow arrival order.
	queue := make(chan packet, 1<<16)
	var readers, sender sync.WaitGroup
	sender.Go(func() {
		for p := range queue {
			time.Sleep(time.Until(p.due))
			if cut == nil || !cut.Load() {
				_, _ = p.via.WriteToUDP(p.b, p.to)
			}
		}
	})
	var mu sync.Mutex
	upstreams := map[string]*net.UDPConn{}
	readers.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := ln.ReadFromUDP(buf)
			if err != nil {
				return
			}
			mu.Lock()
			up := upstreams[from.String()]
			if up == nil {
				if up, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
					mu.Unlock()
					continue
				}
				upstreams[from.String()] = up
				readers.Go(func() {
					back := make([]byte, 64<<10)
					for {
						n, _, err := up.ReadFromUDP(back)
						if err != nil {
							return
						}
						queue <- packet{time.Now().Add(oneWay), append([]byte(nil), back[:n]...), from, ln}
					}
				})
			}
			mu.Unlock()
			queue <- packet{time.Now().Add(oneWay), append([]byte(nil), buf[:n]...), dst, up}
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, up := range upstreams {
			_ = up.Close()
		}
		mu.Unlock()
		readers.Wait()
		close(queue)
		sender.Wait()
	})
	return ln.LocalAddr().String()
}

// failed counts the flows whose setup failed: no route, every attempt
// failed, or every region overloaded.
func failed(e *edge.Edge) uint64 {
	st := e.Stats()
	return st.Ended(flow.NoHealthyEndpoint) + st.Ended(flow.EndpointFailed) + st.Ended(flow.RegionOverloaded)
}

// TestClose: Close releases the listeners of an Edge that never ran, ends
// a running one (its Run returns), and may be called again.
func TestClose(t *testing.T) {
	newEdge := func() *edge.Edge {
		port := freePort(t)
		e, err := edge.New(edge.Config{Listeners: []edge.Listener{{
			Protocol: "tcp", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Ports: []edge.PortRange{{From: port, To: port}},
			Route: router.Listener{Key: "close"},
		}}}, edge.Regions{})
		require.NoError(t, err)
		require.NoError(t, e.Listen())
		return e
	}
	e := newEdge()
	addr := e.Addrs()[0].String()
	require.NoError(t, e.Close())
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err, "Close leaves the listener bound")
	_ = ln.Close()
	require.NoError(t, e.Close())
	require.ErrorIs(t, e.Run(context.Background()), net.ErrClosed)

	e = newEdge()
	done := make(chan error, 1)
	go func() { done <- e.Run(context.Background()) }()
	// No route: Run takes the connection and resets it.
	if c, err := net.Dial("tcp", e.Addrs()[0].String()); err == nil {
		_, _ = c.Read(make([]byte, 1))
		_ = c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.Stats().Ended(flow.NoHealthyEndpoint) == 0 {
		require.True(t, time.Now().Before(deadline), "Run did not take the connection")
		time.Sleep(time.Millisecond)
	}
	require.NoError(t, e.Close())
	require.NoError(t, <-done)
	require.NoError(t, e.Close())
}

// TestCloseEndsHalfClosedFlows: a flow whose client has sent its FIN
// waits on the endpoint, which keeps its side open. Closing the edge ends
// it (reason shutdown) while the backbone is still up: the splice's copy
// that reads the stream is woken by the stream's cancellation, not only
// by the backbone's end, so that an edge can stop its listeners before its
// backbone (anycast order).
func TestCloseEndsHalfClosedFlows(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	release := make(chan struct{})
	serveEach(t, ln, func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c) // to the client's FIN
		<-release                     // and hold the endpoint's side open
	})
	t.Cleanup(func() { close(release) })
	m := flow.NewMeter(flow.Listener{Key: "test/tcp", Protocol: "tcp"}, nil)
	l := startLabWith(t, map[string]string{"hold-1": ln.Addr().String()}, labOpts{meter: m})
	c, err := net.Dial("tcp", l.edgeAddr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("half"))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	deadline := time.Now().Add(10 * time.Second)
	for m.Snapshot().Active != 1 || m.Snapshot().BytesIn < 4 {
		require.True(t, time.Now().Before(deadline), "the flow was not set up")
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { _ = l.edge.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close waits for a half-closed flow the endpoint keeps open")
	}
	require.EqualValues(t, 1, m.Snapshot().Ended(flow.Shutdown))
}
