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
	// table's own limits; the zero value admits everything.
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
	cfg     Config
	log     *slog.Logger
	rl      *ratelog.Logger // per-flow events
	live    *liveness.Set   // the read loops' wake-ups; nil without Heartbeat
	regions Regions
	socks   []*socket
	gates   map[string]*admit.Gate // by listener key
	nextID  atomic.Uint64
	unknown atomic.Int64   // datagrams from regions naming no open flow
	wg      sync.WaitGroup // the flows' open goroutines

	life       closer.Closer // Close ends Run
	closeSocks sync.Once

	// mu guards flows, ids and perSource.
	mu        sync.RWMutex
	flows     map[flowKey]*udpFlow
	ids       map[uint64]*udpFlow
	perSource map[netip.Addr]int
}

// socket is one bound address:port of a listener.
type socket struct {
	l     *Listener
	gate  *admit.Gate // the listener's, shared by its sockets
	table router.Picker
	conn  *net.UDPConn
	local netip.AddrPort
	meter *flow.Meter
}

type flowKey struct {
	sock   *socket
	client netip.AddrPort
}

// New checks cfg and returns a Forwarder; Listen binds it.
func New(cfg Config, regions Regions) (*Forwarder, error) {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.MaxFlowsPerSource <= 0 {
		cfg.MaxFlowsPerSource = DefaultMaxFlowsPerSource
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = DefaultOpenTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Listeners = append([]Listener(nil), cfg.Listeners...)
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
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
	gates := map[string]*admit.Gate{}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		gates[l.Route.Key] = admit.NewGate(l.Admission, nil, cfg.RateBuckets)
	}
	return &Forwarder{
		cfg:       cfg,
		log:       logger.With("component", "edge-udp"),
		rl:        ratelog.New(logger.With("component", "edge-udp"), ratelog.Every),
		live:      liveness.NewSet(cfg.Heartbeat),
		regions:   regions,
		flows:     map[flowKey]*udpFlow{},
		ids:       map[uint64]*udpFlow{},
		perSource: map[netip.Addr]int{},
		gates:     gates,
	}, nil
}

// Listen binds every listener port on every address. On error nothing
// stays bound.
func (f *Forwarder) Listen() error {
	for i := range f.cfg.Listeners {
		l := &f.cfg.Listeners[i]
		var table router.Picker = router.NewCustom(l.Custom, 17)
		if l.Custom == nil {
			t, err := router.Compile(l.Route)
			if err != nil {
				f.closeSockets()
				return fmt.Errorf("udp: %w", err)
			}
			table = t
		}
		var bound []string
		for _, a := range l.Addrs {
			for _, r := range l.Ports {
				for p := uint32(r.From); p <= uint32(r.To); p++ {
					ap := netip.AddrPortFrom(a, uint16(p))
					c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
					if err != nil {
						f.closeSockets()
						return fmt.Errorf("udp: listener %s: %w", l.Route.Key, err)
					}
					backbone.SetSocketBuffers(c, f.log)
					local := c.LocalAddr().(*net.UDPAddr).AddrPort()
					local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
					f.socks = append(f.socks, &socket{l: l, gate: f.gates[l.Route.Key], table: table, conn: c, local: local, meter: l.Meter})
					bound = append(bound, local.String())
				}
			}
		}
		f.log.Info("listening", "listener", l.Route.Key, "protocol", "udp", "addrs", bound)
	}
	return nil
}

// closeSockets closes every bound socket, once.
func (f *Forwarder) closeSockets() {
	f.closeSocks.Do(func() {
		for _, s := range f.socks {
			_ = s.conn.Close()
		}
	})
}

// Close releases the sockets and, when Run is running, ends it as if its
// context had ended and waits for it to return. It is idempotent; a
// Forwarder that was closed cannot Run.
func (f *Forwarder) Close() error {
	f.closeSockets()
	f.life.Close()
	return nil
}

// SetAdmission replaces the admission rules of the listener key (a
// reload); flows already taken are untouched. It reports whether the
// forwarder has that listener.
func (f *Forwarder) SetAdmission(key string, r admit.Rules) bool {
	g := f.gates[key]
	if g != nil {
		g.SetRules(r)
	}
	return g != nil
}

// Liveness returns when the read loop that has gone longest without
// turning last turned (see Config.Heartbeat); the zero time without
// Heartbeat or sockets.
func (f *Forwarder) Liveness() time.Time { return f.live.Oldest() }

// Addrs returns the bound listener addresses.
func (f *Forwarder) Addrs() []net.Addr {
	out := make([]net.Addr, 0, len(f.socks))
	for _, s := range f.socks {
		out = append(out, s.conn.LocalAddr())
	}
	return out
}

// Meters returns the meter of every listener.
func (f *Forwarder) Meters() []*flow.Meter {
	out := make([]*flow.Meter, 0, len(f.cfg.Listeners))
	for i := range f.cfg.Listeners {
		out = append(out, f.cfg.Listeners[i].Meter)
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
	for _, c := range f.regions {
		c.HandleDatagrams(f.receive)
	}
	defer func() {
		for _, c := range f.regions {
			c.HandleDatagrams(nil)
		}
	}()
	stop := closer.AfterFunc(ctx, f.closeSockets)
	defer stop()
	var readers sync.WaitGroup
	for _, s := range f.socks {
		readers.Go(func() { f.readLoop(ctx, s) })
	}
	readers.Go(func() { f.sweep(ctx) })
	readers.Wait()
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
	var refused flow.Reason
	switch {
	case len(f.flows) >= f.cfg.MaxFlows:
		refused = flow.TableFull
	case f.perSource[src.Addr()] >= f.cfg.MaxFlowsPerSource:
		refused = flow.SourceLimit
	}
	now := time.Now()
	var pass admit.Pass
	if refused == 0 {
		pass, refused = s.gate.Admit(src.Addr(), now)
	}
	if refused != 0 {
		s.meter.Refuse(flow.Record{Client: src, AcceleratorAddr: s.local, Start: now, End: now, Reason: refused})
		return nil
	}
	fl = &udpFlow{id: f.nextID.Add(1), sock: s, client: src, start: now, pass: pass}
	f.flows[key] = fl
	f.ids[fl.id] = fl
	f.perSource[src.Addr()]++
	s.meter.Open()
	return fl
}

// send forwards one packet, held in buf[room:room+n], on l. It reports
// false when l is dead, and the packet must take the slow path.
func (f *Forwarder) send(fl *udpFlow, l *link, buf []byte, room, n int) bool {
	k := wire.DatagramOverhead(fl.id)
	wire.AppendDatagram(buf[room-k:room-k], fl.id, nil)
	err := l.conn.SendDatagram(buf[room-k : room+n])
	if err == nil {
		fl.sock.meter.DatagramIn()
		return true
	}
	var tooLarge *quic.DatagramTooLargeError
	if errors.As(err, &tooLarge) {
		if err := l.writePacket(buf[room : room+n]); err == nil {
			fl.sock.meter.FallbackIn()
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
		fl.sock.meter.Drop(flow.EdgeQueue, 1)
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
		fl.sock.meter.DatagramOut()
	}
}

// sweep removes idle flows.
func (f *Forwarder) sweep(ctx context.Context) {
	minIdle := DefaultIdleTimeout
	for _, l := range f.cfg.Listeners {
		minIdle = min(minIdle, l.IdleTimeout)
	}
	every := min(max(minIdle/8, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var idle []*udpFlow
			f.mu.RLock()
			for _, fl := range f.flows {
				if now.Sub(time.Unix(0, fl.last.Load())) >= fl.sock.l.IdleTimeout {
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
		fl.sock.meter.Drop(flow.EdgeQueue, n)
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
		fl.sock.meter.End(flow.Record{
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
