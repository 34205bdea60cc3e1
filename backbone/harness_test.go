package backbone_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
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
)

// Node names of the test PKI. "stranger" holds a valid certificate from
// the same CA but is not in the region's allow list.
const (
	edgeName     = "edge-1"
	regionName   = "region-1"
	strangerName = "stranger"
	endpointID   = "echo-1"
	listenerPort = 8080
)

// lab is one PKI shared by the nodes of a test.
type lab struct {
	pki *pki.Ephemeral
}

func newLab(t *testing.T) *lab {
	t.Helper()
	e, err := pki.NewEphemeral(edgeName, regionName, strangerName)
	require.NoError(t, err)
	return &lab{pki: e}
}

func (l *lab) store(t *testing.T, node string) *pki.Store {
	t.Helper()
	s, err := l.pki.Store(node, nil)
	require.NoError(t, err)
	return s
}

// clientTLS is the TLS configuration node uses to dial the region.
func (l *lab) clientTLS(t *testing.T, node string) *tls.Config {
	return pki.ClientConfig(l.store(t, node), regionName)
}

// region is a running backbone server with a gateway behind a recorder.
type region struct {
	srv     *backbone.Server
	gw      *gateway.Gateway
	metrics *backbone.Metrics
	rec     *recorder
	addr    string
}

type regionOpts struct {
	listen     string // default 127.0.0.1:0
	maxStreams int64
	noFEC      bool
	gw         gateway.Config
}

// startRegion serves the backbone on 127.0.0.1:0 with one echo endpoint
// (ID endpointID, listener port listenerPort) and allows only edgeName.
func (l *lab) startRegion(t *testing.T, o regionOpts) *region {
	t.Helper()
	m := &backbone.Metrics{}
	if o.gw.Endpoints == nil {
		echo := startEcho(t)
		o.gw.Endpoints = []gateway.Endpoint{{
			ID: endpointID, Host: "127.0.0.1", Port: echo.Port(),
			ListenerPorts: [][2]uint16{{listenerPort, listenerPort}},
		}}
	}
	o.gw.Metrics = m
	gw := gateway.New(o.gw)
	rec := &recorder{h: gw, conns: map[*quic.Conn]int{}, newConn: make(chan *quic.Conn, 64)}
	tlsConf := pki.ServerConfig(l.store(t, regionName), func(n string) bool { return n == edgeName }, m.OnReject(nil))
	if o.listen == "" {
		o.listen = "127.0.0.1:0"
	}
	srv, err := backbone.Listen(backbone.ServerConfig{Listen: o.listen, TLS: tlsConf, MaxStreams: o.maxStreams, NoFEC: o.noFEC}, rec)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.NoError(t, <-done)
	})
	return &region{srv: srv, gw: gw, metrics: m, rec: rec, addr: srv.Addr().String()}
}

// recorder counts the data streams each connection carried and reports new
// connections (seen on their control stream) before handing streams on.
type recorder struct {
	h backbone.Handler
	// mu guards conns.
	mu      sync.Mutex
	conns   map[*quic.Conn]int // connection → data streams seen
	newConn chan *quic.Conn
}

func (r *recorder) ServeStream(ctx context.Context, p backbone.Peer, s *quic.Stream) {
	r.mu.Lock()
	n, seen := r.conns[p.Conn]
	if !seen {
		r.conns[p.Conn] = 0
	} else {
		r.conns[p.Conn] = n + 1
	}
	r.mu.Unlock()
	if !seen {
		select {
		case r.newConn <- p.Conn:
		default:
		}
	}
	r.h.ServeStream(ctx, p, s)
}

// live returns the recorded connections still open.
func (r *recorder) live() map[*quic.Conn]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[*quic.Conn]int{}
	for c, n := range r.conns {
		if c.Context().Err() == nil {
			out[c] = n
		}
	}
	return out
}

// nextConn waits for a new connection.
func (r *recorder) nextConn(t *testing.T) *quic.Conn {
	t.Helper()
	select {
	case c := <-r.newConn:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no new backbone connection")
		return nil
	}
}

// startClient runs a pool of k connections to addr as node.
func (l *lab) startClient(t *testing.T, node, addr string, k int) *backbone.Client {
	t.Helper()
	c, _ := l.startClientLog(t, node, addr, k, nil)
	return c
}

// startClientLog is startClient with a logger; stop ends the client and
// waits for it (it is also called in the test's cleanup).
func (l *lab) startClientLog(t *testing.T, node, addr string, k int, log *slog.Logger) (c *backbone.Client, stop func()) {
	t.Helper()
	return runClient(t, backbone.ClientConfig{
		Region: regionName, Addr: addr, Connections: k,
		TLS: l.clientTLS(t, node), Hello: backbone.Hello(node, "test"), Logger: log,
	})
}

// runClient makes a client of cfg and runs it; stop ends it and waits for
// it (it is also called in the test's cleanup).
func runClient(t *testing.T, cfg backbone.ClientConfig) (c *backbone.Client, stop func()) {
	t.Helper()
	c, err := backbone.NewClient(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// eventually polls cond every few milliseconds until it holds or the
// deadline passes.
func eventually(t *testing.T, within time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, msg)
		}
		<-time.After(5 * time.Millisecond)
	}
}

func waitLive(t *testing.T, c *backbone.Client, k int) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool { return c.Stats().Live == k }, "pool never reached its size")
}

// header is a TCP stream header for the test endpoint.
func header(id string, port uint16) []byte {
	b, err := wire.AppendHeader(nil, &wire.Header{
		Kind: wire.KindTCP, ListenerPort: port, EndpointID: id,
		Client:      netip.MustParseAddrPort("198.18.0.5:40000"),
		Accelerator: netip.MustParseAddrPort("203.0.113.10:8080"),
	})
	if err != nil {
		panic(err)
	}
	return b
}

// openFlow opens a stream on c, sends the endpoint header and returns the
// stream once the region answered OK.
func openFlow(t *testing.T, c *backbone.Client) backbone.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.OpenStream(ctx)
	require.NoError(t, err)
	_, err = s.Write(header(endpointID, listenerPort))
	require.NoError(t, err)
	require.Equal(t, wire.CodeOK, readCode(t, s.Stream))
	return s
}

func readCode(t *testing.T, s *quic.Stream) wire.Code {
	t.Helper()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = s.SetReadDeadline(time.Time{}) }()
	var b [1]byte
	_, err := io.ReadFull(s, b[:])
	require.NoError(t, err)
	return wire.Code(b[0])
}

// echoOnce writes msg on s and reads it back.
func echoOnce(t *testing.T, s io.ReadWriter, msg string) {
	t.Helper()
	_, err := s.Write([]byte(msg))
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(s, got)
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

// goodFlow proves the region still serves a well-behaved edge: a fresh
// flow echoes.
func goodFlow(t *testing.T, c *backbone.Client) {
	t.Helper()
	s := openFlow(t, c)
	echoOnce(t, s, "still serving")
	endFlow(t, s)
}

// endFlow half-closes s, reads the endpoint's end, releases s and returns
// its connection.
func endFlow(t *testing.T, s backbone.Stream) *quic.Conn {
	t.Helper()
	require.NoError(t, s.Close())
	_, err := io.ReadAll(s)
	require.NoError(t, err)
	s.Release()
	return s.Conn()
}

// startEcho runs a TCP echo server; it echoes until the peer half-closes,
// then half-closes too.
func startEcho(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var (
		mu    sync.Mutex // guards conns
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// relay forwards UDP between clients and a target and can black-hole all
// traffic, standing for a region that vanished without a word.
type relay struct {
	pc     *net.UDPConn
	target *net.UDPAddr
	drop   atomic.Bool
	// dropEvery, when n > 0, drops every n-th packet towards the target.
	dropEvery atomic.Int64
	seen      atomic.Int64
	// record keeps a copy of every packet towards the target.
	record atomic.Bool
	// delay holds every packet towards the target back by that long
	// (nanoseconds; 0: none), in order, in one goroutine: a path whose
	// RTT a test can raise.
	delay   atomic.Int64
	delayed chan heldPacket
	done    chan struct{}
	wg      sync.WaitGroup
	// mu guards ups and recorded.
	mu       sync.Mutex
	ups      map[netip.AddrPort]*net.UDPConn
	recorded [][]byte
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	ta, err := net.ResolveUDPAddr("udp", target)
	require.NoError(t, err)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	r := &relay{pc: pc, target: ta, ups: map[netip.AddrPort]*net.UDPConn{},
		delayed: make(chan heldPacket, 4096), done: make(chan struct{})}
	r.wg.Go(r.run)
	r.wg.Go(r.sendDelayed)
	t.Cleanup(func() {
		close(r.done)
		_ = pc.Close()
		r.mu.Lock()
		for _, u := range r.ups {
			_ = u.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *relay) addr() string { return r.pc.LocalAddr().String() }

func (r *relay) run() {
	buf := make([]byte, 65536)
	for {
		n, from, err := r.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if r.drop.Load() {
			continue
		}
		if n := r.dropEvery.Load(); n > 0 && r.seen.Add(1)%n == 0 {
			continue
		}
		if r.record.Load() {
			r.mu.Lock()
			r.recorded = append(r.recorded, bytes.Clone(buf[:n]))
			r.mu.Unlock()
		}
		up, err := r.upstream(from)
		if err != nil {
			return
		}
		if d := r.delay.Load(); d > 0 {
			select {
			case r.delayed <- heldPacket{at: time.Now().Add(time.Duration(d)), up: up, b: bytes.Clone(buf[:n])}:
			default: // the queue is full: the path drops it
			}
			continue
		}
		_, _ = up.Write(buf[:n])
	}
}

// heldPacket is a packet the relay's delay holds back until at.
type heldPacket struct {
	at time.Time
	up *net.UDPConn
	b  []byte
}

// sendDelayed sends the held packets when their time comes.
func (r *relay) sendDelayed() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case p := <-r.delayed:
			if wait := time.Until(p.at); wait > 0 {
				t.Reset(wait)
				select {
				case <-t.C:
				case <-r.done:
					return
				}
			}
			_, _ = p.up.Write(p.b)
		case <-r.done:
			return
		}
	}
}

func (r *relay) upstream(from netip.AddrPort) (*net.UDPConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u := r.ups[from]; u != nil {
		return u, nil
	}
	u, err := net.DialUDP("udp", nil, r.target)
	if err != nil {
		return nil, err
	}
	r.ups[from] = u
	r.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, err := u.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP port unreachable and the like
			}
			if r.drop.Load() {
				continue
			}
			_, _ = r.pc.WriteToUDPAddrPort(buf[:n], from)
		}
	})
	return u, nil
}
