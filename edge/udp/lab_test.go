package udp_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/router"
	"github.com/anyedge/anyedge/edge/udp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const regionName = "region-test"

// fleet is the PKI of a test fleet: one region and some pops.
type fleet struct {
	p    *pki.Ephemeral
	pops []string
}

func newFleet(t testing.TB, pops ...string) *fleet {
	t.Helper()
	p, err := pki.NewEphemeral(append([]string{regionName}, pops...)...)
	require.NoError(t, err)
	return &fleet{p: p, pops: pops}
}

// region is a backbone server and gateway on 127.0.0.1.
type region struct {
	srv    *backbone.Server
	gw     *gateway.Gateway
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// startRegion starts a region on addr ("127.0.0.1:0" for any port).
func (f *fleet) startRegion(t testing.TB, addr string, eps []gateway.Endpoint) *region {
	t.Helper()
	return f.startRegionWith(t, addr, gateway.Config{Endpoints: eps})
}

// startRegionWith starts a region whose gateway has cfg (dial timeout 1 s).
func (f *fleet) startRegionWith(t testing.TB, addr string, cfg gateway.Config) *region {
	t.Helper()
	store, err := f.p.Store(regionName, nil)
	require.NoError(t, err)
	cfg.DialTimeout = time.Second
	gw := gateway.New(cfg)
	allowed := map[string]bool{}
	for _, p := range f.pops {
		allowed[p] = true
	}
	srv, err := backbone.Listen(backbone.ServerConfig{
		Listen: addr,
		TLS:    pki.ServerConfig(store, func(n string) bool { return allowed[n] }, nil),
	}, gw)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &region{srv: srv, gw: gw, cancel: cancel}
	r.wg.Go(func() { _ = srv.Serve(ctx) })
	t.Cleanup(r.stop)
	return r
}

func (r *region) addr() string { return r.srv.Addr().String() }

// stop closes the backbone server and the gateway's UDP flows.
func (r *region) stop() {
	r.once.Do(func() {
		r.cancel()
		_ = r.srv.Close()
		r.wg.Wait()
		_ = r.gw.Close()
	})
}

// edgeNode is one pop: a backbone client and a UDP forwarder.
type edgeNode struct {
	fwd    *udp.Forwarder
	client *backbone.Client
	stop   func() // stops the forwarder and its backbone, and waits
	addrs  []netip.AddrPort
}

type edgeOpts struct {
	addr         netip.Addr // default 127.0.0.1
	port         uint16
	idle         time.Duration
	maxFlows     int
	maxPerSource int
	endpoints    []string
	admission    admit.Rules
}

func (f *fleet) startEdge(t testing.TB, name, regionAddr string, o edgeOpts) *edgeNode {
	t.Helper()
	store, err := f.p.Store(name, nil)
	require.NoError(t, err)
	cl, err := backbone.NewClient(backbone.ClientConfig{
		Region: regionName, Addr: regionAddr,
		TLS: pki.ClientConfig(store, regionName), Hello: backbone.Hello(name, "test"),
	})
	require.NoError(t, err)
	if !o.addr.IsValid() {
		o.addr = netip.MustParseAddr("127.0.0.1")
	}
	var reps []router.Endpoint
	for _, id := range o.endpoints {
		reps = append(reps, router.Endpoint{ID: id, Weight: 128})
	}
	fwd, err := udp.New(udp.Config{
		Listeners: []udp.Listener{{
			Accelerator: "test",
			Addrs:       []netip.Addr{o.addr},
			Ports:       []udp.PortRange{{From: o.port, To: o.port}},
			IdleTimeout: o.idle,
			Admission:   o.admission,
			Route: router.Listener{Key: "test/udp", Groups: []router.Group{{
				Region: regionName, TrafficDial: 100, Endpoints: reps}}},
		}},
		MaxFlows: o.maxFlows, MaxFlowsPerSource: o.maxPerSource,
	}, udp.Regions{regionName: cl})
	require.NoError(t, err)
	require.NoError(t, fwd.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = cl.Run(ctx) })
	wg.Go(func() { _ = fwd.Run(ctx) })
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	waitFor(t, 5*time.Second, cl.Reachable, "backbone did not come up")
	e := &edgeNode{fwd: fwd, client: cl, stop: stop}
	for _, a := range fwd.Addrs() {
		e.addrs = append(e.addrs, a.(*net.UDPAddr).AddrPort())
	}
	return e
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		require.True(t, time.Now().Before(deadline), msg)
		time.Sleep(5 * time.Millisecond)
	}
}

// freeUDPPort returns a port free on 127.0.0.1 for both UDP and TCP (and
// not handed out before by this test binary).
func freeUDPPort(t testing.TB) uint16 {
	t.Helper()
	for range 100 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		port := c.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = c.Close()
		if err != nil {
			continue
		}
		_ = ln.Close()
		usedMu.Lock()
		seen := usedPorts[port]
		usedPorts[port] = true
		usedMu.Unlock()
		if !seen {
			return uint16(port)
		}
	}
	t.Fatal("no free port")
	return 0
}

var (
	usedMu    sync.Mutex
	usedPorts = map[int]bool{}
)

// echoEndpoint is a UDP echo server that records where packets came from
// and, with proxy set, strips and records a PROXY v2 header from every
// datagram.
type echoEndpoint struct {
	conn  *net.UDPConn
	proxy bool
	// mu guards sources and headers.
	mu      sync.Mutex
	sources map[netip.AddrPort]int
	headers []*proxyproto.Header
	bad     int
}

func startEcho(t testing.TB, proxy bool) *echoEndpoint {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	backbone.SetSocketBuffers(c, nil)
	e := &echoEndpoint{conn: c, proxy: proxy, sources: map[netip.AddrPort]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = c.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 1<<16)
		for {
			n, src, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p := buf[:n]
			var hdr *proxyproto.Header
			if proxy {
				r := bufio.NewReaderSize(bytes.NewReader(p), len(p)+16)
				hdr, err = proxyproto.Read(r)
				if err != nil {
					e.mu.Lock()
					e.bad++
					e.mu.Unlock()
					continue
				}
				p = p[n-r.Buffered():]
			}
			e.mu.Lock()
			e.sources[src]++
			if hdr != nil {
				e.headers = append(e.headers, hdr)
			}
			e.mu.Unlock()
			_, _ = c.WriteToUDPAddrPort(p, src)
		}
	})
	return e
}

func (e *echoEndpoint) addrPort() netip.AddrPort { return e.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (e *echoEndpoint) sourceList() map[netip.AddrPort]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[netip.AddrPort]int, len(e.sources))
	for k, v := range e.sources {
		m[k] = v
	}
	return m
}

// gatewayEndpoint describes ep for the gateway, serving listener port.
func gatewayEndpoint(id string, ep netip.AddrPort, port uint16, proxy bool) gateway.Endpoint {
	return gateway.Endpoint{ID: id, Host: ep.Addr().String(), Port: ep.Port(),
		ListenerPorts: [][2]uint16{{port, port}}, ProxyProtocol: proxy}
}

// client is a UDP client socket.
func dialClient(t testing.TB, to netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip sends p, again every 250 ms (UDP may lose a packet on a busy
// machine), and waits up to d for an echo equal to p.
func roundTrip(c *net.UDPConn, p []byte, d time.Duration) bool {
	buf := make([]byte, 1<<16)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := c.Write(p); err != nil {
			return false
		}
		next := time.Now().Add(250 * time.Millisecond)
		if next.After(deadline) {
			next = deadline
		}
		_ = c.SetReadDeadline(next)
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			if bytes.Equal(buf[:n], p) {
				return true
			}
		}
	}
	return false
}
