// Package edge is the PoP side of anyedge: it accepts client connections on
// the accelerators' listeners, picks a region and an endpoint for each new
// flow (edge/router), and carries the flow over a pooled backbone stream to
// that region, retrying elsewhere when a region reports a failed dial
// before any byte has flowed.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/portmap"
	"github.com/anyedge/anyedge/backbone/splice"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/internal/closer"
	"github.com/anyedge/anyedge/edge/internal/liveness"
	"github.com/anyedge/anyedge/edge/router"
	"github.com/anyedge/anyedge/edge/tlsterm"
	"github.com/anyedge/anyedge/internal/ratelog"
)

// PortRange is an inclusive range of ports.
type PortRange struct{ From, To uint16 }

// Listener is one listener of one accelerator.
type Listener struct {
	// Accelerator names the accelerator (logs and status).
	Accelerator string
	// Protocol is "tcp" (UDP comes with its own listener type).
	Protocol string
	// Addrs are the addresses to bind: the accelerator's anycast addresses.
	Addrs []netip.Addr
	// Ports are the listening port ranges.
	Ports []PortRange
	// IdleTimeout cuts flows without traffic (0: never).
	IdleTimeout time.Duration
	// EarlyData says which first client bytes travel with a new flow's
	// header, before the region's answer (zero value: none).
	EarlyData EarlyData
	// Route is the routing policy of the listener.
	Route router.Listener
	// Meter counts the listener's flows; nil: the edge makes its own.
	Meter *flow.Meter
	// Admission is what the listener's new connections must pass right
	// after accept (allow and deny lists, rate per source, caps); the zero
	// value admits everything. A reload (Prepare) replaces it; the
	// listener's counters and buckets carry over.
	Admission admit.Rules
	// Custom, for a custom routing listener, is its port map: a flow's
	// listener port names its destination, region and subnet (the
	// "endpoint" of Route's groups); Route then serves readiness only.
	Custom *portmap.Table
	// TLS, when set, terminates TLS at the edge (beyond AWS Global
	// Accelerator): the flow carries the decrypted bytes. The edge runs
	// its file watcher while the listener is in force.
	TLS *tlsterm.Terminator
}

// picker returns the listener's routing decision, compiled.
func (l *Listener) picker(proto uint8) (router.Picker, error) {
	if l.Custom != nil {
		return router.NewCustom(l.Custom, proto), nil
	}
	return router.Compile(l.Route)
}

// Config configures an Edge.
type Config struct {
	// Node is the edge's node name (logs).
	Node string
	// Listeners are the listeners to serve.
	Listeners []Listener
	// RetryBudget bounds the time spent retrying other endpoints or regions
	// for one new flow (default 1 s); at most MaxRetries retries are made.
	RetryBudget time.Duration
	// OpenTimeout bounds opening a stream and hearing the region's answer
	// (default 3 s).
	OpenTimeout time.Duration
	// HedgeDelay is how long a new flow waits for a region's answer, on top
	// of twice the region's RTT, before trying the next choice in parallel
	// (default 200 ms).
	HedgeDelay time.Duration
	// SuspectFor is how long new flows avoid an endpoint whose answer was
	// so slow that a hedged attempt won (default 5 s): long enough for the
	// region's health push or the backbone's dead-peer detection to follow.
	SuspectFor time.Duration
	// Logger receives events.
	Logger *slog.Logger
	// MaxConns caps the TCP connections the edge holds at once, every
	// listener together (0: no cap); RateBuckets is how many source
	// prefixes each listener's rate limit remembers (0:
	// admit.DefaultBuckets).
	MaxConns, RateBuckets int
	// Heartbeat, when positive, wakes each accept loop at least this often
	// so that Liveness can tell a turning loop from a stuck one (the
	// watchdog); zero leaves the loops blocked until a client comes.
	Heartbeat time.Duration
}

// MaxRetries is how many other endpoints or regions a new flow may try
// after a failed first attempt.
const MaxRetries = 2

// Regions gives the backbone client of each region; it is also the
// router's view of the world.
type Regions = backbone.Regions

var _ router.View = Regions(nil)

// Edge serves the listeners of one PoP.
type Edge struct {
	cfg  Config
	log  *slog.Logger
	rl   *ratelog.Logger // per-flow events
	live *liveness.Set   // the accept loops' wake-ups; nil without Heartbeat
	view *suspects       // the router's view: regions, less suspected endpoints
	// listeners are the TCP listeners in force (New, then each Commit);
	// immutable.
	listeners atomic.Pointer[[]Listener]
	global    *admit.Global // the cap on connections, every listener's

	// wg joins every goroutine Run starts: flows, attempts, the release of
	// hedging's losers.
	wg sync.WaitGroup
	// accepting joins the accept loops; Run and Commit add them under mu
	// unless noAccept or closed is set.
	accepting sync.WaitGroup
	// watching joins the certificate watchers of TLS listeners (tls.go).
	watching sync.WaitGroup
	// stopping is set when Run's context has ended: flows cut from then
	// on end with flow.Shutdown.
	stopping atomic.Bool
	life     closer.Closer // Close ends Run
	gates    *admit.Gates  // by listener key: kept across reloads
	// mu guards socks, conns, noAccept, closed, runCtx, watchCtx and
	// watchers.
	mu       sync.Mutex
	socks    []*tcpSocket
	conns    map[*net.TCPConn]*tcpFlow // the flows open
	noAccept bool                      // StopAccepting was called
	closed   bool                      // the sockets were closed for good
	runCtx   context.Context           // Run's, while it runs: Commit starts accept loops in it
	watchCtx context.Context           // Run's certificate watchers' (until every flow ended)
	watchers map[*tlsterm.Terminator]context.CancelFunc
}

// tcpSocket is one bound address and port. A reload that keeps the
// address and port keeps the socket and swaps the listener it serves.
type tcpSocket struct {
	ln   *net.TCPListener
	addr netip.AddrPort
	// cur is the listener configuration the socket serves now; a flow
	// takes it once, when accepted.
	cur atomic.Pointer[boundListener]
	// removed is set (under Edge.mu) when a reload closed the socket.
	removed bool
}

// boundListener is one socket's listener configuration, compiled:
// immutable, replaced whole by a reload.
type boundListener struct {
	l     *Listener
	gate  *admit.Gate // the listener's, shared by its sockets
	table router.Picker
	port  uint16
	meter *flow.Meter
	// serves lists the region and endpoint pairs of l.Route: a flow to
	// any other was cut by the reload that removed it.
	serves map[router.Choice]bool
}

// tcpFlow is an open flow: its socket and configuration, its share of the
// caps and, once spliced, its endpoint and stream. Edge.mu guards it.
type tcpFlow struct {
	sock    *tcpSocket
	bl      *boundListener // the configuration the flow started with
	pass    admit.Pass
	choice  router.Choice
	str     backbone.Stream
	spliced bool
	// cut is why a reload (or the end of Run) ended the flow; zero
	// while it runs.
	cut flow.Reason
}

// cancel ends a spliced flow's stream both ways with code, which ends the
// splice even where closing the client connection cannot (a copy blocked
// reading the stream, after the client's FIN). Edge.mu is held.
func (t *tcpFlow) cancel(code quic.StreamErrorCode) {
	if t.spliced {
		t.str.CancelRead(code)
		t.str.CancelWrite(code)
	}
}

// New compiles the routing tables and returns an Edge; Listen binds it.
func New(cfg Config, regions Regions) (*Edge, error) {
	if cfg.RetryBudget <= 0 {
		cfg.RetryBudget = time.Second
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = 3 * time.Second
	}
	if cfg.HedgeDelay <= 0 {
		cfg.HedgeDelay = 200 * time.Millisecond
	}
	if cfg.SuspectFor <= 0 {
		cfg.SuspectFor = 5 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	listeners, err := tcpListeners(cfg.Listeners, regions)
	if err != nil {
		return nil, err
	}
	cfg.Listeners = nil
	global := admit.NewGlobal(cfg.MaxConns)
	e := &Edge{
		cfg:      cfg,
		log:      logger.With("component", "edge"),
		rl:       ratelog.New(logger.With("component", "edge"), ratelog.Every),
		live:     liveness.NewSet(cfg.Heartbeat),
		view:     newSuspects(regions, cfg.SuspectFor),
		conns:    map[*net.TCPConn]*tcpFlow{},
		global:   global,
		gates:    admit.NewGates(global, cfg.RateBuckets),
		watchers: map[*tlsterm.Terminator]context.CancelFunc{},
	}
	e.listeners.Store(&listeners)
	return e, nil
}

// tcpListeners copies the TCP listeners of ls, gives each a meter if it
// has none, and checks that regions has every region they route to.
func tcpListeners(ls []Listener, regions Regions) ([]Listener, error) {
	var out []Listener
	for _, l := range ls {
		if l.Protocol != "tcp" {
			continue
		}
		if l.Meter == nil {
			l.Meter = flow.NewMeter(flow.Listener{Key: l.Route.Key, Accelerator: l.Accelerator, Protocol: "tcp"}, nil)
		}
		for _, g := range l.Route.Groups {
			if regions[g.Region] == nil {
				return nil, fmt.Errorf("edge: listener %s: no backbone client for region %q", l.Route.Key, g.Region)
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// compile compiles the routing table of each listener of ls, for the
// sockets that serve it, with its gate from gates.
func (e *Edge) compile(ls []Listener, gates *admit.GatesUpdate) ([]*boundListener, error) {
	out := make([]*boundListener, len(ls))
	for i := range ls {
		l := &ls[i]
		table, err := l.picker(6)
		if err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
		out[i] = &boundListener{l: l, gate: gates.Gate(l.Route.Key, l.Admission), table: table, meter: l.Meter, serves: l.Route.Targets()}
	}
	return out, nil
}

// bindTCP binds one socket that will serve bl.
func bindTCP(ap netip.AddrPort, bl *boundListener) (*tcpSocket, error) {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", bl.l.Route.Key, err)
	}
	s := &tcpSocket{ln: ln, addr: ap}
	s.Serve(bl)
	return s, nil
}

// Serve implements bindset.Socket: the socket's next connection takes
// bl.
func (s *tcpSocket) Serve(bl *boundListener) { s.cur.Store(bl.on(s)) }

// Remove implements bindset.Socket. Edge.mu is held.
func (s *tcpSocket) Remove() { s.removed = true }

// AddrPort implements bindset.Socket: the address and port as configured.
func (s *tcpSocket) AddrPort() netip.AddrPort { return s.addr }

// String is the address bound.
func (s *tcpSocket) String() string { return s.ln.Addr().String() }

// on returns bl for socket s.
func (bl *boundListener) on(s *tcpSocket) *boundListener {
	c := *bl
	c.port = s.addr.Port()
	return &c
}

// Listen binds every TCP listener port on every address. On error nothing
// stays bound.
func (e *Edge) Listen() error {
	u, err := e.Prepare(*e.listeners.Load(), e.regions())
	if err != nil {
		return err
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		u.Abort()
		return net.ErrClosed
	}
	u.Commit()
	return nil
}

func closeSockets(socks []*tcpSocket) {
	for _, s := range socks {
		_ = s.Close()
	}
}

// Close closes the socket.
func (s *tcpSocket) Close() error { return s.ln.Close() }

// closeListeners closes every bound socket, for good.
func (e *Edge) closeListeners() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	closeSockets(e.socks)
}

// Close releases the listeners and, when Run is running, ends it as if its
// context had ended (open flows are reset) and waits for it to return. It
// is idempotent; an Edge that was closed cannot Run.
func (e *Edge) Close() error {
	e.closeListeners()
	e.life.Close()
	return nil
}

// SetAdmission replaces the admission rules of the listener key;
// connections already taken are untouched. It reports whether the edge
// has that listener. A reload (Prepare, Commit) sets them too.
func (e *Edge) SetAdmission(key string, r admit.Rules) bool { return e.gates.SetRules(key, r) }

// Addrs returns the bound listener addresses.
func (e *Edge) Addrs() []net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []net.Addr
	for _, s := range e.socks {
		out = append(out, s.ln.Addr())
	}
	return out
}

// Meters returns the meter of every TCP listener.
func (e *Edge) Meters() []*flow.Meter {
	ls := *e.listeners.Load()
	out := make([]*flow.Meter, 0, len(ls))
	for i := range ls {
		out = append(out, ls[i].Meter)
	}
	return out
}

// Liveness returns when the accept loop that has gone longest without
// turning last turned (see Config.Heartbeat); the zero time without
// Heartbeat or listeners.
func (e *Edge) Liveness() time.Time { return e.live.Oldest() }

// Stats returns the edge's counters summed over its listeners.
func (e *Edge) Stats() flow.Counters {
	var c flow.Counters
	for _, m := range e.Meters() {
		c.Add(m.Snapshot())
	}
	return c
}

// regions returns the backbone clients in force.
func (e *Edge) regions() Regions { return e.view.current() }

// Run serves the bound listeners until ctx ends, then stops accepting,
// resets the flows still open, and returns when every goroutine has ended.
func (e *Edge) Run(ctx context.Context) error {
	ctx, done, err := e.life.Start(ctx)
	if err != nil {
		return err
	}
	defer done()
	// The certificate watchers of listeners that terminate TLS run while
	// anything may still handshake: until every flow has ended.
	wctx, wstop := context.WithCancel(context.WithoutCancel(ctx))
	e.mu.Lock()
	e.runCtx, e.watchCtx = ctx, wctx
	e.watchLocked(wctx, *e.listeners.Load())
	if !e.noAccept && !e.closed {
		for _, s := range e.socks {
			e.accepting.Go(func() { e.acceptLoop(ctx, s) })
		}
	}
	e.mu.Unlock()
	<-ctx.Done()
	// From here on Commit starts no accept loop: closed is set.
	e.stopping.Store(true)
	e.mu.Lock()
	e.closed = true
	closeSockets(e.socks)
	for c, fl := range e.conns {
		e.cutLocked(c, fl, flow.Shutdown)
	}
	e.mu.Unlock()
	e.accepting.Wait()
	e.wg.Wait()
	wstop()
	e.watching.Wait()
	return nil
}

// watchLocked runs the certificate watcher of every TLS listener of ls
// that has none, in ctx, and stops those of listeners no longer in ls.
// e.mu is held.
func (e *Edge) watchLocked(ctx context.Context, ls []Listener) {
	keep := map[*tlsterm.Terminator]bool{}
	for i := range ls {
		t := ls[i].TLS
		if t == nil {
			continue
		}
		keep[t] = true
		if e.watchers[t] != nil {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		e.watchers[t] = cancel
		e.watching.Go(func() { _ = t.Run(wctx) })
	}
	for t, cancel := range e.watchers {
		if !keep[t] {
			cancel()
			delete(e.watchers, t)
		}
	}
}

// StopAccepting closes the listeners and returns once no accept loop
// runs, so that every connection taken is counted by its listener's
// meter. The flows already taken go on until they end or Run's context
// ends. It is idempotent.
func (e *Edge) StopAccepting() {
	e.mu.Lock()
	e.noAccept = true
	closeSockets(e.socks)
	e.mu.Unlock()
	e.accepting.Wait()
}

func (e *Edge) acceptLoop(ctx context.Context, s *tcpSocket) {
	live := e.live.Loop(s.ln.SetDeadline)
	defer live.Done()
	var backoff time.Duration // while the process is out of descriptors
	for {
		c, err := s.ln.AcceptTCP()
		if err != nil {
			if live.Woke(err) {
				continue
			}
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			key := s.cur.Load().l.Route.Key
			if !outOfResources(err) {
				e.rl.Warn("accept", "listener", key, "err", err)
				continue
			}
			// The connection stays in the kernel's queue; retrying at once
			// would spin. Back off, never longer than the heartbeat, so
			// that the watchdog still sees the loop turn.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if e.cfg.Heartbeat > 0 {
				backoff = min(backoff, e.cfg.Heartbeat)
			}
			e.rl.Warn("accept: out of descriptors, backing off", "listener", key, "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		if !e.admit(ctx, s, c) {
			return
		}
	}
}

// outOfResources reports an accept error that retrying at once cannot
// cure: the process or the system is out of descriptors or memory.
func outOfResources(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// admit runs the listener's gate on a new connection of socket s: a
// refused one is reset and counted at once, without a goroutine; an
// admitted one is served. It reports false when the edge is stopping or
// the socket was removed.
func (e *Edge) admit(ctx context.Context, s *tcpSocket, c *net.TCPConn) bool {
	bl := s.cur.Load()
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	now := time.Now()
	pass, refused := bl.gate.Admit(src.Addr(), now)
	if refused != 0 {
		_ = c.SetLinger(0)
		_ = c.Close()
		dst := c.LocalAddr().(*net.TCPAddr).AddrPort()
		bl.meter.Refuse(flow.Record{Client: src, AcceleratorAddr: netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()),
			Start: now, End: now, Reason: refused})
		return true
	}
	if !e.track(c, s, bl, pass) {
		pass.Done()
		_ = c.Close()
		return false
	}
	bl.meter.Open()
	e.wg.Go(func() { e.serveTCP(ctx, bl, c) })
	return true
}

func (e *Edge) track(c *net.TCPConn, s *tcpSocket, bl *boundListener, pass admit.Pass) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || s.removed {
		return false
	}
	e.conns[c] = &tcpFlow{sock: s, bl: bl, pass: pass}
	return true
}

// spliced records the endpoint and stream of c's flow, so that stopping
// the edge, or a reload that removes the endpoint, ends it. When the edge
// is stopping already, or a reload since the flow was accepted removed
// its endpoint or listener, it ends the flow now and returns why.
func (e *Edge) spliced(c *net.TCPConn, choice router.Choice, str backbone.Stream) flow.Reason {
	choice.FailOpen = false
	e.mu.Lock()
	defer e.mu.Unlock()
	fl := e.conns[c]
	if fl == nil {
		return 0
	}
	fl.choice, fl.str, fl.spliced = choice, str, true
	switch {
	case fl.cut != 0:
	case e.stopping.Load():
		e.cutLocked(c, fl, flow.Shutdown)
	case fl.bl != fl.sock.cur.Load() || fl.sock.removed:
		// A reload since the flow started.
		if reason := fl.cutReason(); reason != 0 {
			e.cutLocked(c, fl, reason)
		}
	}
	return fl.cut
}

// untrack forgets a flow that ended, gives back its share of the caps and
// returns why it was cut, if it was.
func (e *Edge) untrack(c *net.TCPConn) flow.Reason {
	e.mu.Lock()
	fl := e.conns[c]
	delete(e.conns, c)
	e.mu.Unlock()
	if fl == nil {
		return 0
	}
	fl.pass.Done()
	return fl.cut
}

// serveTCP routes one client connection and splices it to a stream.
//
// It sets the flow up with firstAttempt and, when that is refused or slow,
// hedged (attempt.go), then runs the splice in goroutines of its own and
// returns, so that an idle flow keeps no routing stack alive.
func (e *Edge) serveTCP(ctx context.Context, bl *boundListener, c *net.TCPConn) {
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	dst := c.LocalAddr().(*net.TCPAddr).AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	rf := router.Flow{Proto: 6, Src: src, Dst: dst}
	hdr := wire.Header{Kind: wire.KindTCP, ListenerPort: bl.port, Client: src, Accelerator: dst}
	rec := flow.Record{Client: src, AcceleratorAddr: dst, Start: time.Now()}

	// The client side of the flow: c, or its TLS layer when the edge
	// terminates TLS for the listener.
	var client splice.TCP = c
	if bl.l.TLS != nil {
		tc, err := bl.l.TLS.Handshake(ctx, c)
		if err != nil {
			e.rl.Info("tls handshake failed", "listener", bl.l.Route.Key, "client", src.String(), "err", err)
			rec.Reason = flow.TLSFailed
			if e.stopping.Load() {
				rec.Reason = flow.Shutdown
			}
			e.endSetup(bl, c, &rec)
			return
		}
		client = tc
		hdr.Flags |= wire.FlagTLS
		hdr.SNI, hdr.ALPN, hdr.TLSVersion = tc.Info.SNI, tc.Info.ALPN, tc.Info.Version
	}
	var ed *early
	if bl.l.EarlyData != EarlyOff {
		ed = &early{mode: bl.l.EarlyData}
		defer ed.release()
		if bl.l.TLS == nil {
			// What the client already sent, without waiting (the TLS
			// layer may hold decrypted bytes the socket does not show:
			// with TLS the reads while the flow is set up take them).
			ed.poll(c)
		}
		if ed.err != nil {
			e.abort(bl, c, &rec, ed.err)
			return
		}
	}
	won, ok := e.firstAttempt(ctx, bl, rf, hdr, client, ed)
	if !ok && (ed == nil || ed.err == nil) {
		won = e.hedged(ctx, bl, rf, hdr, won, ed)
	}
	rec.Region, rec.Endpoint = won.choice.Region, won.choice.EndpointID
	for _, id := range won.slow {
		// A held flow's region passed over these (slow or refused): new
		// flows avoid them for a while, as for a hedge the edge won.
		e.view.suspect(won.choice.Region, id)
	}
	if ed != nil && ed.err != nil {
		if won.err == nil {
			backbone.CancelFlow(won.str)
		}
		e.abort(bl, c, &rec, ed.err)
		return
	}
	if rest := ed.bytes()[won.sent:]; won.err == nil && len(rest) > 0 {
		if _, err := won.str.Write(rest); err != nil {
			backbone.CancelFlow(won.str)
			won.err = err
		}
	}
	if won.err != nil {
		rec.Reason = flow.SetupFailure(won.err)
		if e.stopping.Load() {
			rec.Reason = flow.Shutdown
		}
		e.endSetup(bl, c, &rec)
		return
	}
	if won.sent > 0 {
		bl.meter.Early()
	}
	if n := len(ed.bytes()); n > 0 {
		rec.BytesIn = uint64(n)
		bl.meter.BytesIn().Add(uint64(n))
	}
	if cut := e.spliced(c, won.choice, won.str); cut != 0 {
		// Stopping, or a reload removed the endpoint (or the
		// listener) meanwhile.
		backbone.CancelFlow(won.str)
		rec.Reason = cut
		e.endSetup(bl, c, &rec)
		return
	}
	e.wg.Add(1)
	opts := splice.Options{Idle: bl.l.IdleTimeout, Up: bl.meter.BytesIn(), Down: bl.meter.BytesOut(), TCPInfo: true,
		Buffered: bl.l.TLS != nil}
	splice.StartWith(client, won.str, opts, func(res splice.Result) {
		won.str.Release()
		cut := e.untrack(c)
		rec.BytesIn += uint64(res.Up)
		rec.BytesOut = uint64(res.Down)
		rec.PacketsIn, rec.PacketsOut = res.SegsIn, res.SegsOut
		rec.Reason = e.closeReason(res)
		if cut != 0 {
			rec.Reason = cut
		}
		rec.End = time.Now()
		bl.meter.Packets(res.SegsIn, res.SegsOut)
		bl.meter.End(rec)
		e.log.Debug("flow closed", "client", src.String(), "endpoint", won.choice.EndpointID,
			"up", res.Up, "down", res.Down, "reason", rec.Reason, "err", res.ResetErr)
		e.wg.Done()
	})
}

// closeReason says why a spliced flow ended.
func (e *Edge) closeReason(res splice.Result) flow.Reason {
	switch {
	case res.Idle:
		return flow.IdleTimeout
	case res.Reset && e.stopping.Load():
		return flow.Shutdown
	case res.ResetBy == splice.SideTCP:
		return flow.ClientReset
	case res.ResetBy == splice.SideStream:
		return streamEnd(res.ResetErr)
	case res.FirstFIN == splice.SideStream:
		return flow.EndpointFIN
	}
	return flow.ClientFIN
}

// streamEnd tells a reset by the region (the endpoint reset the flow, or
// the region cut it) from the loss of the backbone connection.
func streamEnd(err error) flow.Reason {
	var se *quic.StreamError
	switch {
	case errors.As(err, &se) && se.ErrorCode == wire.StreamEndpointRemoved:
		return flow.EndpointRemoved // the region's reload removed it
	case se != nil:
		return flow.EndpointReset
	}
	return flow.BackboneLost
}

// abort ends a flow whose client failed while it was set up.
func (e *Edge) abort(bl *boundListener, c *net.TCPConn, rec *flow.Record, err error) {
	e.log.Debug("client failed during flow setup", "client", rec.Client.String(), "err", err)
	rec.Reason = flow.ClientAborted
	if e.stopping.Load() {
		rec.Reason = flow.Shutdown
	}
	e.endSetup(bl, c, rec)
}

// endSetup ends a flow that was never spliced: a reset, not a FIN, so that
// the client learns at once that nothing is there.
func (e *Edge) endSetup(bl *boundListener, c *net.TCPConn, rec *flow.Record) {
	if cut := e.untrack(c); cut != 0 {
		rec.Reason = cut
	}
	_ = c.SetLinger(0)
	_ = c.Close()
	rec.End = time.Now()
	bl.meter.End(*rec)
}

// ListenerKey names a listener in logs and routing tables.
func ListenerKey(accelerator, proto string, firstPort uint16) string {
	return accelerator + "/" + proto + "/" + strconv.Itoa(int(firstPort))
}
