// Package gateway is the region end of the backbone: it serves the streams
// edges open, dials the endpoint a stream names by ID (only endpoints in
// the region's own configuration, so no node can be turned into an open
// proxy), answers with a one-byte code, and then splices bytes both ways.
// It also serves control streams, pushing the region's endpoint health to
// every connected edge.
package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/splice"
	"github.com/anyedge/anyedge/backbone/stripe"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/internal/ratelog"
)

// Endpoint is one endpoint the region may dial.
type Endpoint struct {
	// ID is the fleet-wide endpoint ID edges name.
	ID string
	// Host is an IP address or DNS name.
	Host string
	// Port, when non-zero, is always dialled; otherwise the listener port
	// after PortOverrides.
	Port uint16
	// ListenerPorts are the inclusive port ranges of the listener the
	// endpoint serves; a stream naming another listener port is refused.
	ListenerPorts [][2]uint16
	// PortOverrides maps listener ports to endpoint ports.
	PortOverrides map[uint16]uint16
	// ProxyProtocol sends a PROXY protocol v2 header before any data.
	ProxyProtocol bool
	// IdleTimeout cuts a TCP flow with no traffic (0: never).
	IdleTimeout time.Duration
	// Reencrypt, when set, has the region speak TLS to the endpoint
	// (after the PROXY header, if any): its RootCAs verify the endpoint's
	// certificate, and its ServerName, when set, is the name sent and
	// verified — else the client's SNI (wire.FlagTLS), else Host. The
	// region offers the endpoint the ALPN protocol the client negotiated
	// with the edge, if any, and refuses the flow when the endpoint does
	// not take it. Share one ClientSessionCache among flows.
	Reencrypt *tls.Config

	// dest is set for a custom routing destination (see custom.go).
	dest netip.AddrPort
}

// Target returns the address to dial for a flow on listenerPort, or false
// when that port does not belong to the endpoint's listener.
func (e *Endpoint) Target(listenerPort uint16) (string, bool) {
	ok := false
	for _, r := range e.ListenerPorts {
		if listenerPort >= r[0] && listenerPort <= r[1] {
			ok = true
			break
		}
	}
	if !ok {
		return "", false
	}
	port := e.Port
	if port == 0 {
		port = listenerPort
		if p, ok := e.PortOverrides[listenerPort]; ok {
			port = p
		}
	}
	return net.JoinHostPort(e.Host, strconv.Itoa(int(port))), true
}

// Ejector is told about failed dials (passive health checking).
type Ejector interface {
	Eject(endpointID, reason string)
}

// Config configures a Gateway.
type Config struct {
	// Endpoints are the endpoints of this region.
	Endpoints []Endpoint
	// DialTimeout bounds one endpoint dial (default 2 s).
	DialTimeout time.Duration
	// HeaderTimeout bounds how long an edge may take to send a stream
	// header (default 5 s).
	HeaderTimeout time.Duration
	// Dial, if set, dials endpoints over TCP instead of a net.Dialer (a
	// seam for tests); it must return a *net.TCPConn.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// LoadInterval is how often the region pushes its load to every
	// connected edge on the control stream (default 1 s).
	LoadInterval time.Duration
	// Ejector, if set, learns about failed dials at once.
	Ejector Ejector
	// Custom is the region's custom routing configuration (custom.go).
	Custom Custom
	// DownFor is how long a custom routing destination whose dial failed
	// is refused without a dial (default DefaultDownFor).
	DownFor time.Duration
	// Limits are the region's caps on flows (limits.go); zero: none.
	Limits Limits
	// Metrics, if set, counts refused streams by answer code.
	Metrics *backbone.Metrics
	// NoStripe, when set, does not offer striped flows to edges (the
	// region's hello lists no CapStripe), so edges send none.
	NoStripe bool
	// Logger receives flow events.
	Logger *slog.Logger
}

// Gateway serves backbone streams in a region. It implements
// backbone.Handler.
type Gateway struct {
	cfg    Config
	log    *slog.Logger
	rl     *ratelog.Logger // per-stream and per-dial events
	table  atomic.Pointer[map[string]*Endpoint]
	stats  atomic.Pointer[map[string]*epStats] // see stats.go
	custom custom                              // see custom.go
	flows  atomic.Int64                        // TCP flows
	tcp    sync.WaitGroup                      // TCP splices running
	udp    udpState                            // see udp.go
	caps   caps                                // see limits.go

	// tcpMu guards tcpFlows, the TCP flows being spliced (reload.go), and
	// tcpClosed.
	tcpMu     sync.Mutex
	tcpFlows  map[*tcpFlow]struct{}
	tcpClosed bool // Close has run: no flow is tracked any more

	// mu guards health, subs, edges and fleetSubs.
	mu     sync.Mutex
	health map[string]wire.EndpointHealth
	subs   map[chan struct{}]struct{}
	// edges holds, per connected edge, its open control streams and the
	// last state it sent; fleetSubs are the control streams to tell.
	edges     map[string]*edgeEntry
	fleetSubs map[chan struct{}]struct{}

	// stripeMu guards stripes: the striped flows, for their lanes to join
	// (see stripe.go).
	stripeMu sync.Mutex
	stripes  map[stripeKey]*stripe.Conn
}

type edgeEntry struct {
	streams int
	state   *wire.EdgeState
}

var _ backbone.Handler = (*Gateway)(nil)

// New returns a Gateway for cfg.
func New(cfg Config) *Gateway {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 5 * time.Second
	}
	if cfg.LoadInterval <= 0 {
		cfg.LoadInterval = time.Second
	}
	if cfg.DownFor <= 0 {
		cfg.DownFor = DefaultDownFor
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{
		cfg:       cfg,
		log:       logger.With("component", "gateway"),
		rl:        ratelog.New(logger.With("component", "gateway"), ratelog.Every),
		health:    map[string]wire.EndpointHealth{},
		subs:      map[chan struct{}]struct{}{},
		edges:     map[string]*edgeEntry{},
		fleetSubs: map[chan struct{}]struct{}{},
	}
	g.custom.downFor = cfg.DownFor
	g.SetEndpoints(cfg.Endpoints)
	if cfg.Custom.Subnets != nil {
		g.SetCustom(cfg.Custom)
	}
	return g
}

// SetEndpoints swaps the endpoint table (hot reload). Flows to the
// endpoints that stay are untouched, even when their address changed;
// flows to the endpoints removed are cut (see reload.go). It returns how
// many were cut.
func (g *Gateway) SetEndpoints(eps []Endpoint) int {
	m := make(map[string]*Endpoint, len(eps))
	for i := range eps {
		e := eps[i]
		m[e.ID] = &e
	}
	g.keepStats(eps)
	g.table.Store(&m)
	return g.cutRemoved()
}

// ActiveFlows is the number of flows being served, TCP and UDP.
func (g *Gateway) ActiveFlows() int64 { return g.flows.Load() + g.udp.open.Load() }

// SetHealth records the health of endpoints and pushes the changes to
// every connected edge.
func (g *Gateway) SetHealth(hs []wire.EndpointHealth) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, h := range hs {
		g.health[h.ID] = h
	}
	for ch := range g.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Edges returns the last state of every edge with a control stream open,
// by node name: what the region relays to the edges.
func (g *Gateway) Edges() []wire.EdgeState {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []wire.EdgeState
	for _, e := range g.edges {
		if e.state != nil {
			out = append(out, *e.state)
		}
	}
	slices.SortFunc(out, func(a, b wire.EdgeState) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// edgeStream counts a control stream of the edge called node opening
// (+1) or closing (−1); an edge whose last stream closed leaves the fleet.
func (g *Gateway) edgeStream(node string, delta int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.edges[node]
	if e == nil {
		e = &edgeEntry{}
		g.edges[node] = e
	}
	e.streams += delta
	if e.streams > 0 {
		return
	}
	delete(g.edges, node)
	if e.state != nil {
		g.notifyFleet()
	}
}

// setEdgeState records what an edge said of itself, if it is newer than
// what the region holds (an edge sends it on each of its connections).
func (g *Gateway) setEdgeState(node string, st wire.EdgeState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.edges[node]
	if e == nil || e.state != nil && !st.Newer(*e.state) {
		return
	}
	st.Node = node
	e.state = &st
	g.notifyFleet()
}

// notifyFleet pokes every control stream that relays the fleet; g.mu is
// held.
func (g *Gateway) notifyFleet() {
	for ch := range g.fleetSubs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (g *Gateway) healthView() map[string]wire.EndpointHealth {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := make(map[string]wire.EndpointHealth, len(g.health))
	for k, v := range g.health {
		m[k] = v
	}
	return m
}

// ServeStream implements backbone.Handler.
func (g *Gateway) ServeStream(ctx context.Context, peer backbone.Peer, s *quic.Stream) {
	_ = s.SetReadDeadline(time.Now().Add(g.cfg.HeaderTimeout))
	h, err := wire.ReadHeader(s)
	_ = s.SetReadDeadline(time.Time{})
	if err != nil {
		var se *quic.StreamError
		if errors.As(err, &se) && se.Remote {
			// The edge gave the stream up before its header arrived: a
			// hedge's loser, or a client that went away. Nothing is wrong.
			g.log.Debug("stream cancelled before its header", "peer", peer.Name, "err", err)
			s.CancelWrite(wire.StreamReset)
			return
		}
		g.rl.Log(slog.LevelWarn, "bad stream header "+peer.Name, "bad stream header", "peer", peer.Name, "err", err)
		g.refuse(s, wire.CodeBadHeader)
		return
	}
	switch h.Kind {
	case wire.KindControl:
		g.serveControl(ctx, peer, s)
	case wire.KindTCP:
		g.serveTCP(ctx, peer, s, &h)
	case wire.KindUDP:
		g.serveUDP(ctx, peer, s, &h)
	case wire.KindLane:
		g.serveLane(peer, s, &h)
	default:
		g.refuse(s, wire.CodeNotAllowed)
	}
}

// refuse answers a stream with a failure code and ends it.
func (g *Gateway) refuse(s *quic.Stream, c wire.Code) {
	if g.cfg.Metrics != nil {
		g.cfg.Metrics.CountStreamRefused(c)
	}
	_, _ = s.Write([]byte{byte(c)})
	s.CancelRead(wire.StreamReset)
	_ = s.Close()
}

// resolve finds the endpoint a stream names and the address to dial for
// its listener port; it refuses the stream and reports false when the
// region has no such endpoint or the port is not the endpoint's listener's.
func (g *Gateway) resolve(peer backbone.Peer, s *quic.Stream, h *wire.Header) (*Endpoint, string, bool) {
	ep, addr, code := g.lookup(peer, h, h.EndpointID)
	if code != wire.CodeOK {
		g.refuse(s, code)
		return nil, "", false
	}
	return ep, addr, true
}

// lookup finds endpoint id of a stream and the address to dial for its
// listener port, or the code to refuse it with.
func (g *Gateway) lookup(peer backbone.Peer, h *wire.Header, id string) (*Endpoint, string, wire.Code) {
	ep := (*g.table.Load())[id]
	if ep == nil {
		var code wire.Code
		if ep, code = g.resolveCustom(h); code != wire.CodeOK {
			if code == wire.CodeUnknownEndpoint || code == wire.CodeNotAllowed {
				g.rl.Log(slog.LevelWarn, "unknown endpoint "+peer.Name, "stream names unknown endpoint or subnet port", "peer", peer.Name,
					"kind", h.Kind, "endpoint", id, "listener_port", h.ListenerPort, "code", code.String())
			}
			return nil, "", code
		}
	}
	addr, ok := ep.Target(h.ListenerPort)
	if !ok {
		g.rl.Log(slog.LevelWarn, "port outside listener "+peer.Name, "stream names a port outside the endpoint's listener", "peer", peer.Name,
			"kind", h.Kind, "endpoint", id, "listener_port", h.ListenerPort)
		return nil, "", wire.CodeNotAllowed
	}
	return ep, addr, wire.CodeOK
}

// endpointConn is a connection to an endpoint, ready for a flow's bytes.
type endpointConn struct {
	raw *net.TCPConn
	// side is what the splice reads and writes: raw, or TLS over it.
	side splice.TCP
	tls  bool
}

// connect dials endpoint ep at addr and readies the connection (the
// PROXY header written, the TLS handshake done for an endpoint the region
// re-encrypts to), all within the dial timeout, counting the dial; a
// failure (not a cancellation of ctx) ejects the endpoint (or marks a
// custom routing destination down) and returns the answer code.
func (g *Gateway) connect(ctx context.Context, ep *Endpoint, addr string, h *wire.Header) (endpointConn, wire.Code) {
	st := g.statsOf(ep.ID)
	st.dialsTCP.Add(1)
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, g.cfg.DialTimeout)
	c, err := g.cfg.Dial(dctx, "tcp", addr)
	var ec endpointConn
	if err == nil {
		ec, err = ready(dctx, ep, c.(*net.TCPConn), h)
	}
	cancel()
	if err != nil {
		code := dialCode(err)
		if ctx.Err() != nil {
			return endpointConn{}, code // cancelled: the flow is gone, or another dial won
		}
		st.fail(code)
		g.rl.Log(slog.LevelWarn, "dial "+ep.ID, "endpoint dial failed", "endpoint", ep.ID, "addr", addr, "code", code.String(), "err", err)
		switch {
		case ep.dest.IsValid():
			g.markDown(ep.ID, ep.dest, code.String())
		case g.cfg.Ejector != nil:
			g.cfg.Ejector.Eject(ep.ID, code.String())
		}
		return endpointConn{}, code
	}
	st.observe(time.Since(start))
	return ec, wire.CodeOK
}

// ready writes the PROXY header to a fresh endpoint connection, when the
// endpoint wants one, and runs the TLS handshake when the region
// re-encrypts to it; on an error c is closed.
func ready(ctx context.Context, ep *Endpoint, c *net.TCPConn, h *wire.Header) (endpointConn, error) {
	ec := endpointConn{raw: c, side: c}
	if ep.ProxyProtocol {
		if err := writeProxyHeader(c, h); err != nil {
			_ = c.Close()
			return ec, err
		}
	}
	if ep.Reencrypt == nil {
		return ec, nil
	}
	conf := ep.Reencrypt.Clone()
	switch {
	case conf.ServerName != "":
	case h.SNI != "":
		conf.ServerName = h.SNI
	default:
		conf.ServerName = ep.Host
	}
	conf.NextProtos = nil
	if h.ALPN != "" {
		conf.NextProtos = []string{h.ALPN}
	}
	tc := tls.Client(c, conf)
	err := tc.HandshakeContext(ctx)
	if err == nil && h.ALPN != "" && tc.ConnectionState().NegotiatedProtocol != h.ALPN {
		err = fmt.Errorf("tls to endpoint: it did not take ALPN %q, which the client negotiated", h.ALPN)
	}
	if err != nil {
		_ = c.Close()
		return ec, fmt.Errorf("tls to endpoint: %w", err)
	}
	ec.side, ec.tls = &splice.TLS{Conn: tc, Raw: c}, true
	return ec, nil
}

func (g *Gateway) serveTCP(ctx context.Context, peer backbone.Peer, s *quic.Stream, h *wire.Header) {
	var (
		ep     *Endpoint
		ec     endpointConn
		winner int
	)
	held := h.Flags&wire.FlagHold != 0
	var release func()
	if held {
		var ok bool
		if release, ok = g.admitFlow(peer.Name); !ok {
			g.refuse(s, wire.CodeOverloaded)
			return
		}
		if ep, ec, winner, ok = g.dialHeld(ctx, peer, s, h); !ok {
			release()
			return
		}
	} else {
		var addr string
		var ok bool
		if ep, addr, ok = g.resolve(peer, s, h); !ok {
			return
		}
		if release, ok = g.admitFlow(peer.Name); !ok {
			g.refuse(s, wire.CodeOverloaded)
			return
		}
		var code wire.Code
		if ec, code = g.connect(ctx, ep, addr, h); ec.raw == nil {
			release()
			g.refuse(s, code)
			return
		}
	}
	st := g.statsOf(ep.ID)
	tc := ec.raw
	var answer [2]byte
	if _, err := s.Write(wire.AppendAnswer(answer[:0], wire.CodeOK, held, winner)); err != nil {
		_ = tc.Close()
		release()
		s.CancelRead(wire.StreamReset)
		return
	}
	tf := &tcpFlow{id: ep.ID, conn: tc, str: s}
	if !g.trackTCP(tf) {
		_ = tc.SetLinger(0)
		_ = tc.Close()
		release()
		s.CancelRead(wire.StreamEndpointRemoved)
		s.CancelWrite(wire.StreamEndpointRemoved)
		return
	}
	g.flows.Add(1)
	st.activeTCP.Add(1)
	g.tcp.Add(1)
	// ctx ends with the backbone connection. Then the flow is over: reset
	// the endpoint side too, or a flow the edge has half-closed would wait
	// on a silent endpoint for its idle timeout (and hold up shutdown). A
	// striped flow outlives any one of its connections: it fails when its
	// last lane does, and the splice then resets the endpoint.
	var str splice.Stream = s
	stop := func() bool { return true }
	if h.Flags&wire.FlagStriped != 0 {
		str = g.startStripe(peer, s, h.FlowID)
		g.tcpMu.Lock()
		tf.str = str // a cut resets every lane
		g.tcpMu.Unlock()
	} else {
		stop = context.AfterFunc(ctx, func() {
			_ = tc.SetLinger(0)
			_ = tc.Close()
		})
	}
	// The splice runs in goroutines of its own; this handler's goroutine
	// returns so that an idle flow keeps no more than the copy loops alive.
	splice.StartWith(ec.side, str, splice.Options{Idle: ep.IdleTimeout, Buffered: ec.tls}, func(splice.Result) {
		g.untrackTCP(tf)
		stop()
		release()
		g.flows.Add(-1)
		st.activeTCP.Add(-1)
		g.tcp.Done()
	})
}

// dialCode maps a dial error to the answer code.
func dialCode(err error) wire.Code {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return wire.CodeDialRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return wire.CodeDialTimeout
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return wire.CodeDialTimeout
		}
		return wire.CodeDialFailed
	}
}

// serveControl runs the region side of a control stream: it reads the
// edge's hello, sends the full health view, then every change.
func (g *Gateway) serveControl(ctx context.Context, peer backbone.Peer, s *quic.Stream) {
	defer s.CancelRead(wire.StreamShutdown)
	defer s.CancelWrite(wire.StreamShutdown)
	r := bufio.NewReader(s)
	_ = s.SetReadDeadline(time.Now().Add(g.cfg.HeaderTimeout))
	t, body, err := wire.ReadMsg(r)
	_ = s.SetReadDeadline(time.Time{})
	if err != nil || t != wire.MsgHello {
		g.log.Warn("control stream without hello", "peer", peer.Name, "err", err, "type", t)
		return
	}
	var hello wire.Hello
	if err := json.Unmarshal(body, &hello); err != nil {
		g.log.Warn("bad hello", "peer", peer.Name, "err", err)
		return
	}
	if hello.Node != peer.Name {
		g.log.Warn("hello names another node than the certificate", "peer", peer.Name, "hello", hello.Node)
		return
	}
	g.log.Debug("edge hello", "peer", peer.Name, "version", hello.Version, "proto", hello.Proto)
	// Forward error correction is allowed before this region says so:
	// the edge turns it on (on a long enough path) only after reading that.
	fecOn := hello.Has(wire.CapFEC) && peer.AllowFEC()

	notify := make(chan struct{}, 1)
	var fleetNotify chan struct{} // nil for edges of protocol 1: they get no relay
	if hello.Proto >= 2 {
		fleetNotify = make(chan struct{}, 1)
	}
	g.mu.Lock()
	g.subs[notify] = struct{}{}
	if fleetNotify != nil {
		g.fleetSubs[fleetNotify] = struct{}{}
	}
	g.mu.Unlock()
	g.edgeStream(peer.Name, +1)
	defer func() {
		g.mu.Lock()
		delete(g.subs, notify)
		delete(g.fleetSubs, fleetNotify)
		g.mu.Unlock()
		g.edgeStream(peer.Name, -1)
	}()
	// Read what the edge sends: its state; skip what this region does not
	// know (newer edges may send more).
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			t, body, err := wire.ReadMsg(r)
			if err != nil {
				return
			}
			if t != wire.MsgEdgeState {
				continue
			}
			var st wire.EdgeState
			if err := json.Unmarshal(body, &st); err != nil {
				g.log.Warn("bad edge state", "peer", peer.Name, "err", err)
				return
			}
			g.setEdgeState(peer.Name, st)
		}
	}()
	defer func() {
		s.CancelRead(wire.StreamShutdown)
		<-drained
	}()
	tick := time.NewTicker(g.cfg.LoadInterval)
	defer tick.Stop()
	sendLoad := func() error {
		return wire.WriteMsg(s, wire.MsgLoad, wire.Load{ActiveFlows: g.ActiveFlows()})
	}
	sendFleet := func() error {
		return wire.WriteMsg(s, wire.MsgFleet, wire.Fleet{Edges: g.Edges()})
	}

	var customSent []byte // the last custom routing state sent, JSON
	sendCustom := func() error {
		if hello.Proto < 3 {
			return nil
		}
		m, ok := g.customMsg()
		if !ok {
			return nil
		}
		b, err := json.Marshal(m)
		if err != nil || bytes.Equal(b, customSent) {
			return err
		}
		customSent = b
		return wire.WriteMsg(s, wire.MsgCustomRouting, json.RawMessage(b))
	}

	sent := map[string]wire.EndpointHealth{}
	full := true
	for {
		view := g.healthView()
		msg := wire.Health{Full: full}
		for id, h := range view {
			if old, ok := sent[id]; full || !ok || old.Healthy != h.Healthy {
				msg.Endpoints = append(msg.Endpoints, h)
			}
		}
		if full || len(msg.Endpoints) > 0 {
			if err := wire.WriteMsg(s, wire.MsgHealth, msg); err != nil {
				return
			}
		}
		if full {
			if err := sendLoad(); err != nil {
				return
			}
			if fleetNotify != nil {
				if err := sendFleet(); err != nil {
					return
				}
			}
		}
		if err := sendCustom(); err != nil {
			return
		}
		if full && hello.Proto >= 4 {
			// Then say what this region serves, to edges that ask (control
			// protocol 4); after the first health, which is what makes an
			// edge count the connection as live.
			caps := slices.Clone(regionCaps)
			if !g.cfg.NoStripe {
				caps = append(caps, wire.CapStripe)
			}
			if fecOn {
				caps = append(caps, wire.CapFEC)
			}
			if err := wire.WriteMsg(s, wire.MsgHello, wire.Hello{Proto: wire.ControlProto, Caps: caps}); err != nil {
				return
			}
		}
		sent, full = view, false
		// Push load on every tick until health changes.
		for changed := false; !changed; {
			select {
			case <-ctx.Done():
				return
			case <-s.Context().Done():
				return
			case <-tick.C:
				if err := sendLoad(); err != nil {
					return
				}
			case <-notify:
				changed = true
			case <-fleetNotify:
				if err := sendFleet(); err != nil {
					return
				}
			}
		}
	}
}

// String describes an endpoint for logs.
func (e *Endpoint) String() string { return fmt.Sprintf("%s(%s)", e.ID, e.Host) }
