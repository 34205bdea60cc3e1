package gateway_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/wire"
)

const (
	edgeName   = "edge-1"
	regionName = "region-1"
	port       = 8080
)

// endpoint is a TCP server whose accepted connections the test drives.
type endpoint struct {
	ln    *net.TCPListener
	conns chan *net.TCPConn
}

func startEndpoint(t *testing.T) *endpoint {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	e := &endpoint{ln: ln, conns: make(chan *net.TCPConn, 16)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			e.conns <- c
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		for {
			select {
			case c := <-e.conns:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return e
}

func (e *endpoint) port() uint16 { return uint16(e.ln.Addr().(*net.TCPAddr).Port) }

func (e *endpoint) accept(t *testing.T) *net.TCPConn {
	t.Helper()
	select {
	case c := <-e.conns:
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("endpoint was not dialled")
		return nil
	}
}

// fixture is a region gateway behind a backbone server, and one raw QUIC
// connection to it from an allowed edge.
type fixture struct {
	gw      *gateway.Gateway
	metrics *backbone.Metrics
	ep      *endpoint
	conn    *quic.Conn
	ejected chan string
}

type ejector chan string

func (e ejector) Eject(id, reason string) { e <- id + ": " + reason }

// fixtureOption adjusts a fixture's gateway configuration; ep is its
// endpoint.
type fixtureOption func(cfg *gateway.Config, ep *endpoint)

func newFixture(t *testing.T, idle time.Duration, opts ...fixtureOption) *fixture {
	t.Helper()
	p, err := pki.NewEphemeral(edgeName, regionName)
	require.NoError(t, err)
	rs, err := p.Store(regionName, nil)
	require.NoError(t, err)
	es, err := p.Store(edgeName, nil)
	require.NoError(t, err)

	ep := startEndpoint(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedPort := uint16(closed.Addr().(*net.TCPAddr).Port)
	require.NoError(t, closed.Close())

	f := &fixture{metrics: &backbone.Metrics{}, ep: ep, ejected: make(chan string, 4)}
	cfg := gateway.Config{
		Endpoints: []gateway.Endpoint{
			{ID: "web", Host: "127.0.0.1", Port: ep.port(), ListenerPorts: [][2]uint16{{port, port}}, IdleTimeout: idle},
			{ID: "down", Host: "127.0.0.1", Port: closedPort, ListenerPorts: [][2]uint16{{port, port}}},
		},
		HeaderTimeout: 300 * time.Millisecond,
		Metrics:       f.metrics,
		Ejector:       ejector(f.ejected),
	}
	for _, o := range opts {
		o(&cfg, ep)
	}
	f.gw = gateway.New(cfg)
	srv, err := backbone.Listen(backbone.ServerConfig{
		Listen: "127.0.0.1:0",
		TLS:    pki.ServerConfig(rs, func(n string) bool { return n == edgeName }, nil),
	}, f.gw)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.NoError(t, <-done)
	})

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	tr := &quic.Transport{Conn: udp}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.conn, err = tr.Dial(ctx, srv.Addr().(*net.UDPAddr), pki.ClientConfig(es, regionName), &quic.Config{MaxIdleTimeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = f.conn.CloseWithError(0, "")
		_ = tr.Close()
		_ = udp.Close()
	})
	return f
}

func header(id string, p uint16) []byte { return headerKind(wire.KindTCP, id, p) }

func headerKind(k wire.Kind, id string, p uint16) []byte {
	b, err := wire.AppendHeader(nil, &wire.Header{
		Kind: k, ListenerPort: p, EndpointID: id, FlowID: uint64(k - 1),
		Client:      netip.MustParseAddrPort("198.18.0.5:40000"),
		Accelerator: netip.MustParseAddrPort("203.0.113.10:8080"),
	})
	if err != nil {
		panic(err)
	}
	return b
}

func (f *fixture) open(t *testing.T) *quic.Stream {
	t.Helper()
	s, err := f.conn.OpenStream()
	require.NoError(t, err)
	t.Cleanup(func() {
		s.CancelRead(0)
		s.CancelWrite(0)
	})
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	return s
}

// flow opens a stream to "web" and returns it with the endpoint's side once
// the region answered OK.
func (f *fixture) flow(t *testing.T) (*quic.Stream, *net.TCPConn) {
	t.Helper()
	s := f.open(t)
	_, err := s.Write(header("web", port))
	require.NoError(t, err)
	require.Equal(t, wire.CodeOK, readCode(t, s))
	return s, f.ep.accept(t)
}

func readCode(t *testing.T, s *quic.Stream) wire.Code {
	t.Helper()
	var b [1]byte
	_, err := io.ReadFull(s, b[:])
	require.NoError(t, err)
	return wire.Code(b[0])
}

// roundTrip proves a flow works both ways.
func roundTrip(t *testing.T, s *quic.Stream, c *net.TCPConn) {
	t.Helper()
	_, err := s.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf))
	_, err = c.Write([]byte("pong"))
	require.NoError(t, err)
	_, err = io.ReadFull(s, buf)
	require.NoError(t, err)
	require.Equal(t, "pong", string(buf))
}

func TestBadStreamsGetCodedRefusals(t *testing.T) {
	f := newFixture(t, 0)
	good := header("web", port)
	for _, c := range []struct {
		name  string
		send  []byte
		fin   bool
		want  wire.Code
		slow  bool // refused only after HeaderTimeout
		eject bool
	}{
		{name: "truncated then FIN", send: good[:9], fin: true, want: wire.CodeBadHeader},
		{name: "id length over 63", send: append([]byte{wire.Version, byte(wire.KindTCP), 0x1f, 0x90, 64}, make([]byte, 100)...), want: wire.CodeBadHeader},
		{name: "unknown version", send: append([]byte{wire.Version + 1}, good[1:]...), want: wire.CodeBadHeader},
		{name: "unknown kind", send: append([]byte{wire.Version, 99}, good[2:]...), want: wire.CodeBadHeader},
		{name: "unknown endpoint", send: header("nope", port), want: wire.CodeUnknownEndpoint},
		{name: "port outside listener", send: header("web", port+1), want: wire.CodeNotAllowed},
		{name: "endpoint refuses", send: header("down", port), want: wire.CodeDialRefused, eject: true},
		{name: "header never completes", send: good[:3], want: wire.CodeBadHeader, slow: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := f.metrics.StreamsRefused()[c.want]
			s := f.open(t)
			start := time.Now()
			_, err := s.Write(c.send)
			require.NoError(t, err)
			if c.fin {
				require.NoError(t, s.Close())
			}
			require.Equal(t, c.want, readCode(t, s))
			if c.slow {
				require.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond)
			}
			// Then the region ends the stream: FIN after the code.
			rest, err := io.ReadAll(s)
			require.NoError(t, err)
			require.Empty(t, rest)
			require.Equal(t, before+1, f.metrics.StreamsRefused()[c.want])
			if c.eject {
				select {
				case id := <-f.ejected:
					require.Contains(t, id, "down")
				case <-time.After(5 * time.Second):
					t.Fatal("failed dial was not ejected")
				}
			}
			// The connection survives and serves the next flow.
			require.NoError(t, f.conn.Context().Err())
			s2, c2 := f.flow(t)
			roundTrip(t, s2, c2)
		})
	}
}

func TestHalfCloseFromEdge(t *testing.T) {
	f := newFixture(t, 0)
	s, c := f.flow(t)
	roundTrip(t, s, c)
	_, err := s.Write([]byte("last"))
	require.NoError(t, err)
	require.NoError(t, s.Close()) // FIN from the edge
	got, err := io.ReadAll(c)
	require.NoError(t, err, "the endpoint must see a FIN, not a reset")
	require.Equal(t, "last", string(got))
	// The other direction still flows.
	_, err = c.Write([]byte("reply after FIN"))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	got, err = io.ReadAll(s)
	require.NoError(t, err)
	require.Equal(t, "reply after FIN", string(got))
}

func TestHalfCloseFromEndpoint(t *testing.T) {
	f := newFixture(t, 0)
	s, c := f.flow(t)
	roundTrip(t, s, c)
	_, err := c.Write([]byte("bye"))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite()) // FIN from the endpoint
	got, err := io.ReadAll(s)
	require.NoError(t, err, "the edge must see a FIN, not a reset")
	require.Equal(t, "bye", string(got))
	_, err = s.Write([]byte("request after FIN"))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	got, err = io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "request after FIN", string(got))
}

func TestResetFromEdge(t *testing.T) {
	f := newFixture(t, 0)
	s, c := f.flow(t)
	roundTrip(t, s, c)
	s.CancelWrite(wire.StreamReset)
	s.CancelRead(wire.StreamReset)
	_, err := io.ReadAll(c)
	require.ErrorIs(t, err, syscall.ECONNRESET)
	eventuallyZero(t, f.gw)
}

func TestResetFromEndpoint(t *testing.T) {
	f := newFixture(t, 0)
	s, c := f.flow(t)
	roundTrip(t, s, c)
	require.NoError(t, c.SetLinger(0))
	require.NoError(t, c.Close()) // RST
	_, err := io.ReadAll(s)
	var se *quic.StreamError
	require.ErrorAs(t, err, &se)
	require.Equal(t, wire.StreamReset, se.ErrorCode)
	eventuallyZero(t, f.gw)
}

func TestIdleFlowIsCut(t *testing.T) {
	// Round trips every idle/5 keep the flow alive; idle is long enough
	// that a busy machine stalling the test for a moment does not cut it.
	const idle = 1500 * time.Millisecond
	f := newFixture(t, idle)
	s, c := f.flow(t)
	start := time.Now()
	// Traffic keeps the flow alive past the idle timeout...
	for i := range 6 {
		if i > 0 {
			<-time.After(idle / 5)
		}
		roundTrip(t, s, c)
	}
	require.Greater(t, time.Since(start), idle)
	// ...silence ends it with a reset on both sides.
	_, err := io.ReadAll(s)
	var se *quic.StreamError
	require.ErrorAs(t, err, &se)
	require.Equal(t, wire.StreamIdle, se.ErrorCode)
	_, err = io.ReadAll(c)
	require.ErrorIs(t, err, syscall.ECONNRESET)
	eventuallyZero(t, f.gw)
}

func TestControlStreamPushesHealthAndLoad(t *testing.T) {
	f := newFixture(t, 0)
	f.gw.SetHealth([]wire.EndpointHealth{{ID: "web", Healthy: true}})
	s := f.open(t)
	b, err := wire.AppendHeader(nil, &wire.Header{Kind: wire.KindControl})
	require.NoError(t, err)
	_, err = s.Write(b)
	require.NoError(t, err)
	require.NoError(t, wire.WriteMsg(s, wire.MsgHello, wire.Hello{Node: edgeName, Proto: 1}))
	// A newer edge may send messages the region does not know.
	require.NoError(t, wire.WriteMsg(s, 250, "from the future"))
	r := newMsgReader(s)
	typ, _ := r.next(t)
	require.Equal(t, wire.MsgHealth, typ)
	typ, _ = r.next(t)
	require.Equal(t, wire.MsgLoad, typ)
	f.gw.SetHealth([]wire.EndpointHealth{{ID: "web", Healthy: false, Reason: "probe failed"}})
	for {
		typ, body := r.next(t)
		if typ == wire.MsgHealth {
			require.JSONEq(t, `{"endpoints":[{"id":"web","healthy":false,"reason":"probe failed"}]}`, string(body))
			break
		}
	}
}

func TestControlStreamRefusesForeignHello(t *testing.T) {
	f := newFixture(t, 0)
	s := f.open(t)
	b, _ := wire.AppendHeader(nil, &wire.Header{Kind: wire.KindControl})
	_, err := s.Write(b)
	require.NoError(t, err)
	require.NoError(t, wire.WriteMsg(s, wire.MsgHello, wire.Hello{Node: "someone-else", Proto: 1}))
	_, err = io.ReadAll(s)
	var se *quic.StreamError
	require.True(t, errors.As(err, &se), "got %v", err)
	s2, c2 := f.flow(t)
	roundTrip(t, s2, c2)
}

func eventuallyZero(t *testing.T, gw *gateway.Gateway) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for gw.ActiveFlows() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d flows still counted", gw.ActiveFlows())
		}
		<-time.After(5 * time.Millisecond)
	}
}

// control opens a control stream and says hello with proto.
func (f *fixture) control(t *testing.T, proto int) (*quic.Stream, *msgReader) {
	t.Helper()
	s := f.open(t)
	b, err := wire.AppendHeader(nil, &wire.Header{Kind: wire.KindControl})
	require.NoError(t, err)
	_, err = s.Write(b)
	require.NoError(t, err)
	require.NoError(t, wire.WriteMsg(s, wire.MsgHello, wire.Hello{Node: edgeName, Proto: proto}))
	return s, newMsgReader(s)
}

// TestControlFleetOldAndNewEdges: an edge of control protocol 2 gets the
// fleet relay and may send its state; an edge of protocol 1 on the same
// region never sees a message type it does not know.
func TestControlFleetOldAndNewEdges(t *testing.T) {
	f := newFixture(t, 0)
	f.gw.SetHealth([]wire.EndpointHealth{{ID: "web", Healthy: true}})
	_, oldR := f.control(t, 1)
	newS, newR := f.control(t, wire.ControlProto)
	for _, r := range []*msgReader{oldR, newR} {
		typ, _ := r.next(t)
		require.Equal(t, wire.MsgHealth, typ)
		typ, _ = r.next(t)
		require.Equal(t, wire.MsgLoad, typ)
	}
	typ, body := newR.next(t)
	require.Equal(t, wire.MsgFleet, typ)
	require.JSONEq(t, `{"edges":null}`, string(body))

	require.NoError(t, wire.WriteMsg(newS, wire.MsgEdgeState, wire.EdgeState{Node: "forged", Epoch: 5, Seq: 1, Ready: []string{"web"}}))
	for {
		typ, body = newR.next(t)
		if typ == wire.MsgFleet {
			break
		}
	}
	require.JSONEq(t, `{"edges":[{"node":"edge-1","epoch":5,"seq":1,"ready":["web"]}]}`, string(body),
		"the region names the edge by its certificate, not by what it says")

	f.gw.SetHealth([]wire.EndpointHealth{{ID: "web", Healthy: false}})
	for {
		typ, _ := oldR.next(t)
		require.NotEqual(t, wire.MsgFleet, typ, "a protocol 1 edge got a fleet relay")
		if typ == wire.MsgHealth {
			break
		}
	}
}

// TestCloseResetsSplicedFlows: Close ends the TCP flows still spliced — an
// endpoint that neither speaks nor closes must not hold up a region's stop
// — resetting both sides, and returns.
func TestCloseResetsSplicedFlows(t *testing.T) {
	f := newFixture(t, 0)
	s, c := f.flow(t)
	roundTrip(t, s, c)
	closed := make(chan error, 1)
	go func() { closed <- f.gw.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited on a spliced flow")
	}
	_, err := io.ReadAll(c)
	require.ErrorIs(t, err, syscall.ECONNRESET, "the endpoint side is reset")
	_, err = io.ReadAll(s)
	var se *quic.StreamError
	require.ErrorAs(t, err, &se, "the edge side is reset")
	require.Equal(t, wire.StreamShutdown, se.ErrorCode)
}
