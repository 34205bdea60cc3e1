// Package udp is the PoP side of anyedge's UDP acceleration: it binds every
// UDP listener port on every accelerator address (so that a reply leaves
// from the exact address and port the client sent to), keeps a flow table
// keyed by (listener socket, client address, client port) with limits and
// idle timeouts, and carries each flow's packets to a region in QUIC
// DATAGRAM frames tagged with the flow's ID, or on the flow's stream when a
// packet is too large for a datagram.
//
// Opening a flow: the first packet of a new flow picks a region and an
// endpoint (edge/router, once per flow), opens a KindUDP stream carrying
// the flow's header and waits for the region's one-byte answer, queueing
// the flow's packets meanwhile (at most MaxPending). From then on packets
// ride datagrams on the stream's connection; the stream carries the
// packets that do not fit, both ways. When the stream dies (region restart,
// connection lost) the flow reopens on its next packet, to the same
// endpoint.
package udp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/portmap"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/internal/closer"
	"github.com/anyedge/anyedge/edge/internal/liveness"
	"github.com/anyedge/anyedge/edge/router"
	"github.com/anyedge/anyedge/internal/ratelog"
)

// Defaults of Config and Listener.
const (
	DefaultIdleTimeout       = 30 * time.Second
	DefaultMaxFlows          = 262144
	DefaultMaxFlowsPerSource = 1024
	DefaultOpenTimeout       = 3 * time.Second
)

// MaxPending is how many packets a flow queues while its stream opens;
// more are dropped and counted.
const MaxPending = 64

// MaxRetries is how many other endpoints or regions a new flow may try
// after a refused or failed first attempt.
const MaxRetries = 2

// PortRange is an inclusive range of ports.
type PortRange struct{ From, To uint16 }

// Listener is one UDP listener of one accelerator.
type Listener struct {
	// Accelerator names the accelerator (logs).
	Accelerator string
	// Addrs are the addresses to bind: the accelerator's anycast addresses.
	Addrs []netip.Addr
	// Ports are the listening port ranges.
	Ports []PortRange
	// IdleTimeout closes a flow without traffic either way (default 30 s).
	IdleTimeout time.Duration
	// Route is the routing policy of the listener.
	Route router.Listener
	// Meter counts the listener's flows; nil: the forwarder makes its own.
	Meter *flow.Meter
	// Admission is what the listener's new flows must pass at their first
	// packet (allow and deny lists, rate per source, caps), after the
	// table's own limits; the zero value admits everything. A reload
	// (Prepare) replaces it; the listener's counters carry over.
	Admission admit.Rules
	// Custom, for a custom routing listener, is its port map (see
	// edge.Listener.Custom).
	Custom *portmap.Table
}

// Config configures a Forwarder.
type Config struct {
	// Listeners are the UDP listeners to serve.
	Listeners []Listener
	// MaxFlows bounds the flow table (default 262144); MaxFlowsPerSource
	// bounds the flows of one client address (default 1024). A new flow
	// beyond either is refused and counted; open flows are untouched.
	MaxFlows, MaxFlowsPerSource int
	// RateBuckets is how many source prefixes each listener's rate limit
	// remembers (0: admit.DefaultBuckets).
	RateBuckets int
	// OpenTimeout bounds opening a flow's stream and hearing the region's
	// answer (default 3 s).
	OpenTimeout time.Duration
	// Logger receives events.
	Logger *slog.Logger
	// Heartbeat, when positive, wakes each read loop at least this often
	// so that Liveness can tell a turning loop from a stuck one (the
	// watchdog); zero leaves the loops blocked until a packet comes.
	Heartbeat time.Duration
}

// Regions gives the backbone client of each region; it is also the
// router's view of the world.
type Regions = backbone.Regions

// Stats are the forwarder's running totals, summed over its listeners'
// meters.
type Stats struct {
	// Flows is the number of flows in the table.
	Flows int64
	// Opened counts flows created; Refused counts new flows refused
	// because the table or the client's share of it was full; Failed
	// counts flow openings no region accepted.
	Opened, Refused, Failed int64
	// FromClient and ToClient count packets of flows received from and
	// sent to clients; Datagrams counts packets handed to QUIC as
	// datagrams.
	FromClient, ToClient, Datagrams int64
	// FallbackUp and FallbackDown count packets too large for a datagram
	// that took the flow's stream, towards the region and back.
	FallbackUp, FallbackDown int64
	// Dropped counts client packets that could not be forwarded: queue
	// full while opening, or the opening failed.
	Dropped int64
	// UnknownFlow counts datagrams from regions naming no open flow.
	UnknownFlow int64
}

// Forwarder serves the UDP listeners of one PoP.
type Forwarder struct {
	cfg     Config // cfg.Listeners is nil: see listeners
	log     *slog.Logger
	rl      *ratelog.Logger // per-flow events
	live    *liveness.Set   // the read loops' wake-ups; nil without Heartbeat
	regions atomic.Pointer[Regions]
	// listeners are the listeners in force (New, then each Commit);
	// immutable.
	listeners atomic.Pointer[[]Listener]
	nextID    atomic.Uint64
	unknown   atomic.Int64   // datagrams from regions naming no open flow
	wg        sync.WaitGroup // the flows' open goroutines

	life closer.Closer // Close ends Run

	gates *admit.Gates // by listener key: kept across reloads

	// smu guards socks, closed, runCtx and readers' additions.
	smu     sync.Mutex
	socks   []*socket
	closed  bool            // the sockets were closed for good
	runCtx  context.Context // Run's, while it runs: Commit starts read loops in it
	readers sync.WaitGroup  // the read loops

	// mu guards flows, ids, perSource and the limits.
	mu                       sync.RWMutex
	flows                    map[flowKey]*udpFlow
	ids                      map[uint64]*udpFlow
	perSource                map[netip.Addr]int
	maxFlows, maxFlowsPerSrc int
}

// socket is one bound address:port. A reload that keeps the address and
// port keeps the socket, and its flows, and swaps the listener it serves.
type socket struct {
	conn  *net.UDPConn
	local netip.AddrPort // as bound
	addr  netip.AddrPort // as configured (port 0: any)
	// cur is the listener configuration the socket serves now.
	cur atomic.Pointer[boundListener]
	// removed is set when a reload closed the socket (under
	// Forwarder.smu, read under Forwarder.mu once set).
	removed atomic.Bool
}

// boundListener is a listener's configuration, compiled: immutable,
// replaced whole by a reload.
type boundListener struct {
	l     *Listener
	gate  *admit.Gate // the listener's, shared by its sockets
	table router.Picker
	meter *flow.Meter
	// serves lists the region and endpoint pairs of l.Route.
	serves map[router.Choice]bool
}

type flowKey struct {
	sock   *socket
	client netip.AddrPort
}

// New checks cfg and returns a Forwarder; Listen binds it.
func New(cfg Config, regions Regions) (*Forwarder, error) {
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = DefaultOpenTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	listeners, err := checkListeners(cfg.Listeners, regions)
	if err != nil {
		return nil, err
	}
	f := &Forwarder{
		log:       logger.With("component", "edge-udp"),
		rl:        ratelog.New(logger.With("component", "edge-udp"), ratelog.Every),
		live:      liveness.NewSet(cfg.Heartbeat),
		flows:     map[flowKey]*udpFlow{},
		ids:       map[uint64]*udpFlow{},
		perSource: map[netip.Addr]int{},
		gates:     admit.NewGates(nil, cfg.RateBuckets),
	}
	f.SetLimits(cfg.MaxFlows, cfg.MaxFlowsPerSource)
	cfg.Listeners = nil
	f.cfg = cfg
	f.regions.Store(&regions)
	f.listeners.Store(&listeners)
	return f, nil
}

// SetLimits replaces MaxFlows and MaxFlowsPerSource (zero: the default);
// flows beyond the new limits go on, new ones are refused until the table
// is back under them.
func (f *Forwarder) SetLimits(maxFlows, maxFlowsPerSource int) {
	if maxFlows <= 0 {
		maxFlows = DefaultMaxFlows
	}
	if maxFlowsPerSource <= 0 {
		maxFlowsPerSource = DefaultMaxFlowsPerSource
	}
	f.mu.Lock()
	f.maxFlows, f.maxFlowsPerSrc = maxFlows, maxFlowsPerSource
	f.mu.Unlock()
}

// checkListeners copies ls with their defaults and checks that regions
// has every region they route to.
func checkListeners(ls []Listener, regions Regions) ([]Listener, error) {
	out := append([]Listener(nil), ls...)
	for i := range out {
		l := &out[i]
		if l.IdleTimeout <= 0 {
			l.IdleTimeout = DefaultIdleTimeout
		}
		if l.Meter == nil {
			l.Meter = flow.NewMeter(flow.Listener{Key: l.Route.Key, Accelerator: l.Accelerator, Protocol: "udp"}, nil)
		}
		for _, g := range l.Route.Groups {
			if regions[g.Region] == nil {
				return nil, fmt.Errorf("udp: listener %s: no backbone client for region %q", l.Route.Key, g.Region)
			}
		}
	}
	return out, nil
}

// compile compiles the routing table of each listener of ls, with its
// gate from gates.
func (f *Forwarder) compile(ls []Listener, gates *admit.GatesUpdate) ([]*boundListener, error) {
	out := make([]*boundListener, len(ls))
	for i := range ls {
		l := &ls[i]
		var table router.Picker = router.NewCustom(l.Custom, 17)
		if l.Custom == nil {
			t, err := router.Compile(l.Route)
			if err != nil {
				return nil, fmt.Errorf("udp: %w", err)
			}
			table = t
		}
		out[i] = &boundListener{l: l, gate: gates.Gate(l.Route.Key, l.Admission), table: table, meter: l.Meter, serves: l.Route.Targets()}
	}
	return out, nil
}

// bind binds one socket that will serve bl.
func (f *Forwarder) bind(ap netip.AddrPort, bl *boundListener) (*socket, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", bl.l.Route.Key, err)
	}
	backbone.SetSocketBuffers(c, f.log)
	local := c.LocalAddr().(*net.UDPAddr).AddrPort()
	s := &socket{conn: c, addr: ap, local: netip.AddrPortFrom(local.Addr().Unmap(), local.Port())}
	s.Serve(bl)
	return s, nil
}

// Serve implements bindset.Socket: the socket's next flow takes bl.
func (s *socket) Serve(bl *boundListener) { s.cur.Store(bl) }

// Remove implements bindset.Socket.
func (s *socket) Remove() { s.removed.Store(true) }

// AddrPort implements bindset.Socket: the address and port as configured
// (port 0: any).
func (s *socket) AddrPort() netip.AddrPort { return s.addr }

// String is the address bound.
func (s *socket) String() string { return s.local.String() }

func closeSockets(socks []*socket) {
	for _, s := range socks {
		_ = s.Close()
	}
}

// Close closes the socket.
func (s *socket) Close() error { return s.conn.Close() }

// Listen binds every listener port on every address. On error nothing
// stays bound.
func (f *Forwarder) Listen() error {
	u, err := f.Prepare(*f.listeners.Load(), *f.regions.Load())
	if err != nil {
		return err
	}
	f.smu.Lock()
	closed := f.closed
	f.smu.Unlock()
	if closed {
		u.Abort()
		return net.ErrClosed
	}
	u.Commit()
	return nil
}

// closeSockets closes every bound socket, for good.
func (f *Forwarder) closeSockets() {
	f.smu.Lock()
	defer f.smu.Unlock()
	f.closed = true
	closeSockets(f.socks)
}

// Close releases the sockets and, when Run is running, ends it as if its
// context had ended and waits for it to return. It is idempotent; a
// Forwarder that was closed cannot Run.
func (f *Forwarder) Close() error {
	f.closeSockets()
	f.life.Close()
	return nil
}

// SetAdmission replaces the admission rules of the listener key; flows
// already taken are untouched. It reports whether the forwarder has that
// listener. A reload (Prepare, Commit) sets them too.
func (f *Forwarder) SetAdmission(key string, r admit.Rules) bool { return f.gates.SetRules(key, r) }

// Liveness returns when the read loop that has gone longest without
// turning last turned (see Config.Heartbeat); the zero time without
// Heartbeat or sockets.
func (f *Forwarder) Liveness() time.Time { return f.live.Oldest() }

// Addrs returns the bound listener addresses.
func (f *Forwarder) Addrs() []net.Addr {
	f.smu.Lock()
	defer f.smu.Unlock()
	out := make([]net.Addr, 0, len(f.socks))
	for _, s := range f.socks {
		out = append(out, s.conn.LocalAddr())
	}
	return out
}

// Meters returns the meter of every listener.
func (f *Forwarder) Meters() []*flow.Meter {
	ls := *f.listeners.Load()
	out := make([]*flow.Meter, 0, len(ls))
	for i := range ls {
		out = append(out, ls[i].Meter)
	}
	return out
}

// Stats returns the forwarder's counters.
func (f *Forwarder) Stats() Stats {
	f.mu.RLock()
	n := len(f.flows)
	f.mu.RUnlock()
	var c flow.Counters
	for _, m := range f.Meters() {
		c.Add(m.Snapshot())
	}
	return Stats{
		Flows: int64(n), Opened: c.Flows, Refused: int64(c.Ended(flow.TableFull) + c.Ended(flow.SourceLimit)),
		Failed:     int64(c.Ended(flow.NoHealthyEndpoint) + c.Ended(flow.EndpointFailed) + c.Ended(flow.RegionOverloaded)),
		FromClient: int64(c.PacketsIn), ToClient: int64(c.PacketsOut), Datagrams: int64(c.DatagramsIn),
		FallbackUp: int64(c.FallbackIn), FallbackDown: int64(c.FallbackOut),
		Dropped:     int64(c.Dropped[flow.EdgeQueue] + c.Dropped[flow.Backbone]),
		UnknownFlow: f.unknown.Load(),
	}
}

// UnknownFlowDatagrams counts datagrams from regions that named no open
// flow (a flow that just ended, or a region's stale state).
func (f *Forwarder) UnknownFlowDatagrams() int64 { return f.unknown.Load() }

// Run serves the bound sockets until ctx ends, then closes them, ends
// every flow and returns once every goroutine has ended. It takes over the
// datagrams of every region's backbone client for as long as it runs.
func (f *Forwarder) Run(ctx context.Context) error {
	ctx, done, err := f.life.Start(ctx)
	if err != nil {
		return err
	}
	defer done()
	f.smu.Lock()
	f.runCtx = ctx
	for _, c := range *f.regions.Load() {
		c.HandleDatagrams(f.receive)
	}
	if !f.closed {
		for _, s := range f.socks {
			f.readers.Go(func() { f.readLoop(ctx, s) })
		}
	}
	f.readers.Go(func() { f.sweep(ctx) })
	f.smu.Unlock()
	<-ctx.Done()
	// From here on Commit starts no read loop: closed is set.
	f.closeSockets()
	f.readers.Wait()
	f.smu.Lock()
	for _, c := range *f.regions.Load() {
		c.HandleDatagrams(nil)
	}
	f.runCtx = nil
	f.smu.Unlock()
	f.mu.Lock()
	all := make([]*udpFlow, 0, len(f.flows))
	for _, fl := range f.flows {
		all = append(all, fl)
	}
	f.mu.Unlock()
	for _, fl := range all {
		f.remove(fl, wire.StreamShutdown, flow.Shutdown)
	}
	f.wg.Wait()
	return nil
}

// readLoop reads one socket's client packets.
func (f *Forwarder) readLoop(ctx context.Context, s *socket) {
	buf := make([]byte, 16+wire.MaxPacketLen)
	const room = 8 // the longest varint flow ID
	live := f.live.Loop(s.conn.SetReadDeadline)
	defer live.Done()
	for {
		n, src, err := s.conn.ReadFromUDPAddrPort(buf[room:])
		if err != nil {
			if live.Woke(err) {
				continue
			}
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		fl := f.lookup(s, src)
		if fl == nil {
			continue
		}
		fl.touch()
		fl.in(n)
		if l := fl.link.Load(); l != nil {
			if f.send(fl, l, buf, room, n) {
				continue
			}
		}
		f.queue(ctx, fl, buf[room:room+n])
	}
}

// lookup finds the flow of a client on s, creating it within the table's
// limits; nil when refused.
func (f *Forwarder) lookup(s *socket, src netip.AddrPort) *udpFlow {
	key := flowKey{sock: s, client: src}
	f.mu.RLock()
	fl := f.flows[key]
	f.mu.RUnlock()
	if fl != nil {
		return fl
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.flows[key]; fl != nil {
		return fl
	}
	if s.removed.Load() {
		return nil // a reload closed the socket
	}
	bl := s.cur.Load()
	var refused flow.Reason
	switch {
	case len(f.flows) >= f.maxFlows:
		refused = flow.TableFull
	case f.perSource[src.Addr()] >= f.maxFlowsPerSrc:
		refused = flow.SourceLimit
	}
	now := time.Now()
	var pass admit.Pass
	if refused == 0 {
		pass, refused = bl.gate.Admit(src.Addr(), now)
	}
	if refused != 0 {
		bl.meter.Refuse(flow.Record{Client: src, AcceleratorAddr: s.local, Start: now, End: now, Reason: refused})
		return nil
	}
	fl = &udpFlow{id: f.nextID.Add(1), sock: s, bl: bl, meter: bl.meter, client: src, start: now, pass: pass}
	f.flows[key] = fl
	f.ids[fl.id] = fl
	f.perSource[src.Addr()]++
	bl.meter.Open()
	return fl
}

// send forwards one packet, held in buf[room:room+n], on l. It reports
// false when l is dead, and the packet must take the slow path.
func (f *Forwarder) send(fl *udpFlow, l *link, buf []byte, room, n int) bool {
	k := wire.DatagramOverhead(fl.id)
	wire.AppendDatagram(buf[room-k:room-k], fl.id, nil)
	err := l.conn.SendDatagram(buf[room-k : room+n])
	if err == nil {
		fl.meter.DatagramIn()
		return true
	}
	var tooLarge *quic.DatagramTooLargeError
	if errors.As(err, &tooLarge) {
		if err := l.writePacket(buf[room : room+n]); err == nil {
			fl.meter.FallbackIn()
			return true
		}
	}
	fl.link.CompareAndSwap(l, nil)
	return false
}

// queue holds a copy of p for fl until its stream is open, and starts
// opening it if nobody is.
func (f *Forwarder) queue(ctx context.Context, fl *udpFlow, p []byte) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.closed || len(fl.pending) >= MaxPending {
		fl.meter.Drop(flow.EdgeQueue, 1)
		return
	}
	fl.pending = append(fl.pending, append([]byte(nil), p...))
	if !fl.opening {
		fl.opening = true
		f.wg.Go(func() { f.open(ctx, fl) })
	}
}

// receive is the backbone clients' DatagramFunc: a reply for a flow.
func (f *Forwarder) receive(_ *quic.Conn, b []byte) {
	id, p, err := wire.ParseDatagram(b)
	if err != nil {
		f.unknown.Add(1)
		return
	}
	f.mu.RLock()
	fl := f.ids[id]
	f.mu.RUnlock()
	if fl == nil {
		f.unknown.Add(1)
		return
	}
	fl.touch()
	if _, err := fl.sock.conn.WriteToUDPAddrPort(p, fl.client); err == nil {
		fl.out(len(p))
		fl.meter.DatagramOut()
	}
}

// sweep removes idle flows.
func (f *Forwarder) sweep(ctx context.Context) {
	every := f.sweepEvery()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if e := f.sweepEvery(); e != every {
				every = e
				t.Reset(every) // a reload changed the idle timeouts
			}
			var idle []*udpFlow
			f.mu.RLock()
			for _, fl := range f.flows {
				if now.Sub(time.Unix(0, fl.last.Load())) >= fl.sock.cur.Load().l.IdleTimeout {
					idle = append(idle, fl)
				}
			}
			f.mu.RUnlock()
			for _, fl := range idle {
				f.remove(fl, wire.StreamIdle, flow.IdleTimeout)
			}
		}
	}
}

// sweepEvery is how often idle flows are looked for: an eighth of the
// shortest idle timeout in force, within 10 ms and 1 s.
func (f *Forwarder) sweepEvery() time.Duration {
	minIdle := DefaultIdleTimeout
	for _, l := range *f.listeners.Load() {
		minIdle = min(minIdle, l.IdleTimeout)
	}
	return min(max(minIdle/8, 10*time.Millisecond), time.Second)
}

// remove takes fl out of the table, ends its stream and, the first time,
// reports it to its listener's meter with reason.
func (f *Forwarder) remove(fl *udpFlow, code quic.StreamErrorCode, reason flow.Reason) {
	f.mu.Lock()
	key := flowKey{sock: fl.sock, client: fl.client}
	removed := f.flows[key] == fl
	if removed {
		delete(f.flows, key)
		delete(f.ids, fl.id)
		if f.perSource[fl.client.Addr()]--; f.perSource[fl.client.Addr()] <= 0 {
			delete(f.perSource, fl.client.Addr())
		}
	}
	f.mu.Unlock()
	if removed {
		fl.pass.Done()
	}
	fl.mu.Lock()
	fl.closed = true
	if n := len(fl.pending); n > 0 {
		fl.meter.Drop(flow.EdgeQueue, n)
	}
	fl.pending = nil
	l := fl.link.Swap(nil)
	flushing := fl.flushing
	choice := fl.choice
	fl.mu.Unlock()
	if flushing != nil {
		// open is sending the queue on it, maybe blocked: end that now
		// (open releases the stream).
		flushing.str.CancelWrite(code)
		flushing.str.CancelRead(code)
	}
	if removed {
		fl.meter.End(flow.Record{
			Client: fl.client, AcceleratorAddr: fl.sock.local, Region: choice.Region, Endpoint: choice.EndpointID,
			BytesIn: fl.bytesIn.Load(), BytesOut: fl.bytesOut.Load(), PacketsIn: fl.packetsIn.Load(), PacketsOut: fl.packetsOut.Load(),
			Start: fl.start, End: time.Now(), Reason: reason,
		})
	}
	if l != nil {
		// The stream's reader (in open) releases it.
		l.str.CancelRead(code)
		l.wmu.Lock()
		_ = l.str.Close()
		l.wmu.Unlock()
	}
}
