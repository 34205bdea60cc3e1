package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/wire"
)

// DefaultUDPIdleTimeout closes a region UDP flow without traffic when its
// endpoint sets no IdleTimeout.
const DefaultUDPIdleTimeout = 30 * time.Second

var _ backbone.DatagramHandler = (*Gateway)(nil)

// UDPStats are the region's UDP counters.
type UDPStats struct {
	// Flows is the number of open UDP flows (endpoint sockets).
	Flows int64
	// Datagrams counts datagrams read from edge connections. Compared with
	// what the edges sent, it shows what quic-go dropped on the way (its
	// receive queue holds 128 datagrams per connection and drops the rest
	// without a count).
	Datagrams int64
	// ToEndpoint and FromEndpoint count packets forwarded each way.
	ToEndpoint, FromEndpoint int64
	// FallbackToEdge counts replies too large for a datagram that took the
	// flow's stream instead.
	FallbackToEdge int64
	// UnknownFlow counts datagrams whose flow ID this connection has not
	// opened (or has closed).
	UnknownFlow int64
	// Dropped counts packets that could not be forwarded: no live route
	// back to an edge, a full backlog, a send error, or an endpoint socket
	// error; DroppedSocket counts the last kind alone.
	Dropped, DroppedSocket int64
}

// udpKey identifies a UDP flow at the region. It does not name the edge or
// the connection that carried the flow: a client that anycast moves to
// another PoP is routed to the same endpoint (the choice is a function of
// the flow) and so finds the same endpoint socket here. The endpoint ID
// keeps two accelerators that share a listener port apart.
type udpKey struct {
	port     uint16
	client   netip.AddrPort
	endpoint string
}

// udpState is the gateway's UDP flow table (see Gateway.udp).
type udpState struct {
	// mu guards flows, conns and closed.
	mu     sync.Mutex
	flows  map[udpKey]*udpFlow
	conns  map[*quic.Conn]*udpConn
	closed bool

	wg sync.WaitGroup // one reader per flow

	toEndpoint, fromEndpoint, fallback, unknown, dropped, open, datagrams atomic.Int64
	droppedSocket                                                         atomic.Int64
}

// udpConn maps one connection's flow IDs to their bindings.
type udpConn struct {
	// mu guards ids.
	mu  sync.RWMutex
	ids map[uint64]*udpBinding
}

// udpFlow is one region UDP flow: a socket connected to the endpoint.
type udpFlow struct {
	key   udpKey
	st    *epStats
	sock  *net.UDPConn
	proxy []byte // PROXY v2 header prepended to every packet, or nil
	idle  time.Duration
	dest  netip.AddrPort // a custom routing destination, else invalid
	last  atomic.Int64   // unix nanoseconds of the last packet either way
	// route is the binding that last carried a packet from an edge:
	// replies go there.
	route atomic.Pointer[udpBinding]

	// mu guards bindings, closed and release.
	mu       sync.Mutex
	bindings map[*udpBinding]struct{}
	closed   bool
	release  func() // gives the flow's share of the region's caps back
}

// claim makes release the flow's share of the caps, unless the flow has
// one already (another stream opened it) or is closed.
func (f *udpFlow) claim(release func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.release != nil || f.closed {
		return false
	}
	f.release = release
	return true
}

// udpBinding is one (connection, flow ID, stream) carrying a flow.
type udpBinding struct {
	flow *udpFlow
	conn *quic.Conn
	id   uint64
	str  *quic.Stream
	// wmu serialises fallback writes on str.
	wmu sync.Mutex
}

// UDPStats returns the gateway's UDP counters.
func (g *Gateway) UDPStats() UDPStats {
	u := &g.udp
	return UDPStats{
		Flows: u.open.Load(), Datagrams: u.datagrams.Load(), ToEndpoint: u.toEndpoint.Load(), FromEndpoint: u.fromEndpoint.Load(),
		FallbackToEdge: u.fallback.Load(), UnknownFlow: u.unknown.Load(), Dropped: u.dropped.Load() + u.droppedSocket.Load(),
		DroppedSocket: u.droppedSocket.Load(),
	}
}

// Close closes every UDP flow and waits for their goroutines. Call it
// after the backbone server has stopped; UDP streams that arrive later are
// refused. It is idempotent.
//
// Close also ends the TCP flows still being spliced and waits for them;
// they end with their backbone connections anyway, so close the backbone
// server first — what is left then (a splice blocked on an endpoint that
// went silent was seen to hold a region's stop for over 30 s) is over and
// is reset.
func (g *Gateway) Close() error {
	u := &g.udp
	u.mu.Lock()
	u.closed = true
	flows := make([]*udpFlow, 0, len(u.flows))
	for _, f := range u.flows {
		flows = append(flows, f)
	}
	u.mu.Unlock()
	for _, f := range flows {
		g.closeFlow(f)
	}
	u.wg.Wait()
	g.closeTCP()
	g.tcp.Wait()
	return nil
}

// datagramBacklog is how many received datagrams a connection holds
// between quic-go's short queue (128, overflow silently dropped) and the
// endpoint sockets.
const datagramBacklog = 4096

// ServeDatagrams implements backbone.DatagramHandler: it drains the
// connection's datagrams in a tight loop into a backlog (full: dropped and
// counted) that a second goroutine forwards to the flows' endpoint
// sockets, so that the send syscalls never hold up the draining.
func (g *Gateway) ServeDatagrams(ctx context.Context, peer backbone.Peer) {
	uc := g.udpConnOf(peer.Conn)
	if uc == nil {
		return
	}
	defer g.dropUDPConn(peer.Conn)
	backlog := make(chan []byte, datagramBacklog)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(backlog)
	wg.Go(func() {
		scratch := make([]byte, 0, 2048)
		for b := range backlog {
			id, p, err := wire.ParseDatagram(b)
			if err != nil {
				g.udp.unknown.Add(1)
				continue
			}
			uc.mu.RLock()
			bd := uc.ids[id]
			uc.mu.RUnlock()
			if bd == nil {
				g.udp.unknown.Add(1)
				continue
			}
			scratch = g.toEndpoint(bd, p, scratch)
		}
	})
	for {
		b, err := peer.Conn.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		g.udp.datagrams.Add(1)
		select {
		case backlog <- b:
		default:
			g.udp.dropped.Add(1)
		}
	}
}

// toEndpoint sends one packet of bd's flow to the endpoint and makes bd the
// flow's reply route. It returns scratch for reuse.
func (g *Gateway) toEndpoint(bd *udpBinding, p, scratch []byte) []byte {
	f := bd.flow
	f.last.Store(time.Now().UnixNano())
	if f.route.Load() != bd {
		f.route.Store(bd)
	}
	out := p
	if f.proxy != nil {
		scratch = append(append(scratch[:0], f.proxy...), p...)
		out = scratch
	}
	if _, err := f.sock.Write(out); err != nil {
		g.udp.droppedSocket.Add(1)
	} else {
		g.udp.toEndpoint.Add(1)
	}
	return scratch
}

// udpConnOf returns the flow-ID table of conn, creating it; nil once the
// gateway is closed or the connection is gone.
func (g *Gateway) udpConnOf(conn *quic.Conn) *udpConn {
	u := &g.udp
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed || conn.Context().Err() != nil {
		return nil
	}
	if u.conns == nil {
		u.conns = map[*quic.Conn]*udpConn{}
	}
	uc := u.conns[conn]
	if uc == nil {
		uc = &udpConn{ids: map[uint64]*udpBinding{}}
		u.conns[conn] = uc
	}
	return uc
}

func (g *Gateway) dropUDPConn(conn *quic.Conn) {
	u := &g.udp
	u.mu.Lock()
	delete(u.conns, conn)
	u.mu.Unlock()
}

// serveUDP serves a KindUDP stream: it finds or opens the region flow the
// header names, binds the stream's (connection, flow ID) to it, answers
// CodeOK, and then carries the packets the edge sends on the stream (those
// too large for a datagram) until the stream ends.
func (g *Gateway) serveUDP(ctx context.Context, peer backbone.Peer, s *quic.Stream, h *wire.Header) {
	ep, addr, ok := g.resolve(peer, s, h)
	if !ok {
		return
	}
	uc := g.udpConnOf(peer.Conn)
	if uc == nil {
		g.refuse(s, wire.CodeDraining)
		return
	}
	f, code := g.udpFlowFor(ctx, peer.Name, ep, addr, h)
	if code != wire.CodeOK {
		g.refuse(s, code)
		return
	}
	bd := &udpBinding{flow: f, conn: peer.Conn, id: h.FlowID, str: s}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		g.refuse(s, wire.CodeDraining)
		return
	}
	f.bindings[bd] = struct{}{}
	f.mu.Unlock()
	uc.mu.Lock()
	old := uc.ids[h.FlowID]
	uc.ids[h.FlowID] = bd
	uc.mu.Unlock()
	if old != nil {
		// The edge reused a flow ID on this connection: the old stream is
		// stale.
		old.str.CancelRead(wire.StreamReset)
		old.str.CancelWrite(wire.StreamReset)
	}
	f.route.Store(bd)
	f.last.Store(time.Now().UnixNano())
	defer func() {
		uc.mu.Lock()
		if uc.ids[h.FlowID] == bd {
			delete(uc.ids, h.FlowID)
		}
		uc.mu.Unlock()
		f.mu.Lock()
		delete(f.bindings, bd)
		f.mu.Unlock()
		f.route.CompareAndSwap(bd, nil)
	}()
	bd.wmu.Lock()
	_, err := s.Write([]byte{byte(wire.CodeOK)})
	bd.wmu.Unlock()
	if err != nil {
		s.CancelRead(wire.StreamReset)
		return
	}
	buf := make([]byte, wire.MaxPacketLen)
	var scratch []byte
	for {
		n, err := wire.ReadPacket(s, buf)
		if err != nil {
			break
		}
		scratch = g.toEndpoint(bd, buf[:n], scratch)
	}
	s.CancelRead(wire.StreamIdle)
	bd.wmu.Lock()
	_ = s.Close()
	bd.wmu.Unlock()
}

// udpFlowFor finds the region flow for h or opens one towards addr.
func (g *Gateway) udpFlowFor(ctx context.Context, edge string, ep *Endpoint, addr string, h *wire.Header) (*udpFlow, wire.Code) {
	key := udpKey{port: h.ListenerPort, client: h.Client, endpoint: ep.ID}
	u := &g.udp
	u.mu.Lock()
	f := u.flows[key]
	u.mu.Unlock()
	if f != nil {
		return f, wire.CodeOK
	}
	release, ok := g.admitFlow(edge)
	if !ok {
		return nil, wire.CodeOverloaded
	}
	f, code := g.openUDPFlow(ctx, key, ep, addr, h)
	if f == nil || code != wire.CodeOK || !f.claim(release) {
		release()
	}
	return f, code
}

// openUDPFlow opens the region flow key towards addr, or returns the one
// another stream opened meanwhile.
func (g *Gateway) openUDPFlow(ctx context.Context, key udpKey, ep *Endpoint, addr string, h *wire.Header) (*udpFlow, wire.Code) {
	u := &g.udp
	st := g.statsOf(ep.ID)
	st.dialsUDP.Add(1)
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, g.cfg.DialTimeout)
	var d net.Dialer
	c, err := d.DialContext(dctx, "udp", addr)
	cancel()
	if err != nil {
		code := dialCode(err)
		st.fail(code)
		g.rl.Log(slog.LevelWarn, "udp socket "+ep.ID, "endpoint udp socket failed", "endpoint", ep.ID, "addr", addr, "err", err)
		return nil, code
	}
	sock := c.(*net.UDPConn)
	backbone.SetSocketBuffers(sock, g.log)
	st.observe(time.Since(start))
	f := &udpFlow{key: key, st: st, sock: sock, idle: ep.IdleTimeout, dest: ep.dest, bindings: map[*udpBinding]struct{}{}}
	if f.idle <= 0 {
		f.idle = DefaultUDPIdleTimeout
	}
	if ep.ProxyProtocol {
		hdr, err := proxyHeader(h, true)
		if err == nil {
			f.proxy, err = hdr.Format()
		}
		if err != nil {
			_ = sock.Close()
			return nil, wire.CodeDialFailed
		}
	}
	f.last.Store(time.Now().UnixNano())
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		_ = sock.Close()
		return nil, wire.CodeDraining
	}
	if other := u.flows[key]; other != nil {
		// Another stream opened the same flow meanwhile: use it.
		u.mu.Unlock()
		_ = sock.Close()
		return other, wire.CodeOK
	}
	if u.flows == nil {
		u.flows = map[udpKey]*udpFlow{}
	}
	u.flows[key] = f
	u.open.Add(1)
	st.activeUDP.Add(1)
	u.wg.Go(func() { g.fromEndpoint(f) })
	u.mu.Unlock()
	g.log.Debug("udp flow opened", "endpoint", ep.ID, "client", h.Client.String(), "local", sock.LocalAddr().String())
	return f, wire.CodeOK
}

// closeFlow removes f from the table, closes its socket (which ends its
// reader) and resets the streams bound to it, so that their edges open the
// flow afresh on their next packet.
func (g *Gateway) closeFlow(f *udpFlow) { g.closeFlowWith(f, wire.StreamIdle) }

// closeFlowWith is closeFlow with the code the streams are reset with.
func (g *Gateway) closeFlowWith(f *udpFlow, code quic.StreamErrorCode) {
	u := &g.udp
	u.mu.Lock()
	if u.flows[f.key] == f {
		delete(u.flows, f.key)
		u.open.Add(-1)
		f.st.activeUDP.Add(-1)
	}
	u.mu.Unlock()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	if f.release != nil {
		f.release()
	}
	bds := make([]*udpBinding, 0, len(f.bindings))
	for bd := range f.bindings {
		bds = append(bds, bd)
	}
	f.mu.Unlock()
	_ = f.sock.Close()
	for _, bd := range bds {
		bd.str.CancelRead(code)
		bd.str.CancelWrite(code)
	}
}

// fromEndpoint reads the endpoint's replies and sends each on the flow's
// current route: a datagram, or the route's stream when too large. It also
// closes the flow once idle.
func (g *Gateway) fromEndpoint(f *udpFlow) {
	defer g.closeFlow(f)
	const room = 8 // the longest varint flow ID
	buf := make([]byte, room+wire.MaxPacketLen+1)
	var frame []byte
	deadline := time.Unix(0, f.last.Load()).Add(f.idle)
	_ = f.sock.SetReadDeadline(deadline)
	for {
		n, err := f.sock.Read(buf[room:])
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				deadline = time.Unix(0, f.last.Load()).Add(f.idle)
				if !time.Now().Before(deadline) {
					g.log.Debug("udp flow idle", "endpoint", f.key.endpoint, "client", f.key.client.String())
					return
				}
				_ = f.sock.SetReadDeadline(deadline)
				continue
			case errors.Is(err, net.ErrClosed):
				return
			default:
				// ICMP errors (port unreachable) surface here: keep
				// reading. A custom routing destination that answers
				// so is marked down, like a refused TCP dial.
				g.udp.droppedSocket.Add(1)
				if f.dest.IsValid() && errors.Is(err, syscall.ECONNREFUSED) {
					g.markDown(f.key.endpoint, f.dest, "port unreachable")
				}
				continue
			}
		}
		now := time.Now()
		f.last.Store(now.UnixNano())
		if now.Add(f.idle / 2).After(deadline) {
			// Push the deadline forward only now and then.
			deadline = now.Add(f.idle)
			_ = f.sock.SetReadDeadline(deadline)
		}
		bd := f.route.Load()
		if bd == nil {
			g.udp.dropped.Add(1)
			continue
		}
		p := buf[room : room+n]
		k := wire.DatagramOverhead(bd.id)
		d := wire.AppendDatagram(buf[room-k:room-k], bd.id, nil)
		_ = d // the prefix is now in place right before p
		err = bd.conn.SendDatagram(buf[room-k : room+n])
		var tooLarge *quic.DatagramTooLargeError
		switch {
		case err == nil:
			g.udp.fromEndpoint.Add(1)
		case errors.As(err, &tooLarge):
			frame, err = wire.AppendPacket(frame[:0], p)
			if err == nil {
				bd.wmu.Lock()
				_, err = bd.str.Write(frame)
				bd.wmu.Unlock()
			}
			if err != nil {
				g.udp.dropped.Add(1)
				continue
			}
			g.udp.fallback.Add(1)
			g.udp.fromEndpoint.Add(1)
		default:
			g.udp.dropped.Add(1)
		}
	}
}
