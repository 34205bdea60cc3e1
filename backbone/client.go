package backbone

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone/fec"
	"github.com/anyedge/anyedge/backbone/portmap"
	"github.com/anyedge/anyedge/backbone/wire"
)

// ErrUnreachable is returned by OpenStream when no connection to the
// region is up.
var ErrUnreachable = errors.New("region unreachable")

// ClientConfig configures the connection pool of one edge towards one
// region.
type ClientConfig struct {
	// Region is the region's name; it is also the name its certificate
	// must carry.
	Region string
	// Addr is the region's UDP address (host:port).
	Addr string
	// Connections is the pool size: K connections, each on its own UDP
	// socket so that their 5-tuples differ. Default 2.
	Connections int
	// KeepAlivePeriod and IdleTimeout bound dead-peer detection
	// (defaults 1 s and 3 s).
	KeepAlivePeriod, IdleTimeout time.Duration
	// TLS is the client TLS configuration (mutual TLS). Its ServerName is
	// set to Region when empty.
	TLS *tls.Config
	// TLSConfigs, when set, is called for a fresh TLS configuration at each
	// dial instead of using TLS, so that a rotated CA bundle is trusted
	// without a restart (pki.ClientConfigs).
	TLSConfigs func() *tls.Config
	// Hello is what the edge says about itself on every control stream.
	Hello wire.Hello
	// Stripe says when TCP flows are striped over several connections.
	Stripe StripeConfig
	// FEC says when connections protect their packets with forward error
	// correction.
	FEC FECConfig
	// Retire says when a connection whose path RTT rose is replaced
	// (retire.go).
	Retire RetireConfig
	// ListenUDP opens each connection's UDP socket (default: any address,
	// any port); tests use it to open sockets inside a network namespace.
	ListenUDP func() (*net.UDPConn, error)
	// CustomRules are the configured custom routing rules of the
	// region's subnets; the region's run-time overrides (control protocol
	// 3) are applied to them. Nil: the edge serves no custom routing and
	// ignores that state.
	CustomRules *portmap.Rules
	// Logger receives connection events.
	Logger *slog.Logger
}

// Client keeps a pool of warm QUIC connections to one region, spreads new
// streams over the least loaded live connection, redials dead connections
// with jittered exponential backoff (capped at 5 s), and holds the region's
// health view as pushed over the control streams.
type Client struct {
	cfg     ClientConfig
	raddr   *net.UDPAddr
	qconf   *quic.Config
	log     *slog.Logger
	slots   []*slot
	health  atomic.Pointer[map[string]bool]  // endpoint ID → healthy; nil until the region spoke
	load    atomic.Pointer[wire.Load]        // the region's last load report; nil when none or unreachable
	fleet   atomic.Pointer[[]wire.EdgeState] // the region's last relay of edge states; nil when none or unreachable
	custom  atomic.Pointer[customView]       // the region's custom routing state; nil when none or unreachable (custom.go)
	changed chan struct{}                    // coalescing signal of reachability, health or fleet changes
	dgram   datagrams                        // see datagram.go
	rtt     rttFilter                        // the routing RTT (rtt.go)
	caps    atomic.Pointer[[]string]         // what the region's hello listed (Offers)
	now     func() time.Time                 // the clock of RTT samples
	// stripeCap: the region's hello listed wire.CapStripe.
	stripeCap atomic.Bool
	// cmu guards rules, lastCustom and lastAt, the inputs of custom
	// (custom.go).
	cmu        sync.Mutex
	rules      *portmap.Rules
	lastCustom *wire.CustomRouting
	lastAt     time.Time

	// stateMu guards state and stateSubs: what this edge says of itself,
	// and the control streams waiting to send it.
	stateMu   sync.Mutex
	state     *wire.EdgeState
	stateSubs map[chan struct{}]struct{}

	// dials counts connection attempts, dialFailures the failed ones by
	// DialFailure, lost the established connections that died.
	dials        atomic.Int64
	dialFailures [numDialFailures]atomic.Int64
	lost         atomic.Int64
	// retired counts the connections retired by RetireReason (retire.go).
	retired [numRetireReasons]atomic.Int64
}

type slot struct {
	idx    int
	fec    atomic.Pointer[fec.Conn] // the slot's socket; nil: FEC off
	conn   atomic.Pointer[pooled]   // the connection that takes new flows; nil: none
	active atomic.Int64             // open streams, the draining connections' included
	state  atomic.Uint32            // a SlotState
	// draining counts the slot's retired connections still open.
	draining atomic.Int64
	retire   retirer
}

// pooled is one connection of the pool.
type pooled struct {
	conn    *quic.Conn
	streams atomic.Int64 // open streams on this connection
	// idle is signalled whenever a stream's release leaves none open.
	idle chan struct{}
	// replaced closes when a successor took the slot (once, by handOver).
	replaced chan struct{}
	once     sync.Once
}

func newPooled(conn *quic.Conn) *pooled {
	return &pooled{conn: conn, idle: make(chan struct{}, 1), replaced: make(chan struct{})}
}

// handOver tells a retired connection that its successor takes new flows.
func (p *pooled) handOver() { p.once.Do(func() { close(p.replaced) }) }

// release ends one stream on the connection.
func (p *pooled) release() {
	if p.streams.Add(-1) == 0 {
		select {
		case p.idle <- struct{}{}:
		default:
		}
	}
}

// current returns the connection that takes the slot's new flows, or nil.
func (s *slot) current() *quic.Conn {
	if p := s.conn.Load(); p != nil {
		return p.conn
	}
	return nil
}

// SlotState is the state of one connection of the pool.
type SlotState uint32

// Slot states.
const (
	// SlotDialing: a dial (or the wait for the region's first answer on
	// the control stream) is in progress.
	SlotDialing SlotState = iota
	// SlotUp: the connection is established.
	SlotUp
	// SlotBackoff: the last dial failed; the next waits for the backoff.
	SlotBackoff
)

// SlotStates lists every slot state.
var SlotStates = []SlotState{SlotDialing, SlotUp, SlotBackoff}

// String names the state for status and metric labels.
func (s SlotState) String() string {
	switch s {
	case SlotUp:
		return "up"
	case SlotBackoff:
		return "backoff"
	}
	return "dialing"
}

// DialFailure classifies a failed backbone dial.
type DialFailure uint8

// Dial failure reasons.
const (
	// DialTimeout: no answer within the handshake timeout.
	DialTimeout DialFailure = iota
	// DialRefused: the region (or its host) refused: a QUIC or ICMP
	// refusal, or the region closed the connection before its first
	// answer (it refused our certificate).
	DialRefused
	// DialTLS: the TLS handshake failed (our side refused the region's
	// certificate, or the region sent a TLS alert).
	DialTLS
	// DialOther is any other failure.
	DialOther
	numDialFailures
)

// DialFailures lists every dial failure reason.
var DialFailures = []DialFailure{DialTimeout, DialRefused, DialTLS, DialOther}

// String names the reason for status and metric labels.
func (d DialFailure) String() string {
	switch d {
	case DialTimeout:
		return "timeout"
	case DialRefused:
		return "refused"
	case DialTLS:
		return "tls"
	}
	return "other"
}

// classifyDial says why a dial failed.
func classifyDial(err error) DialFailure {
	var (
		idle   *quic.IdleTimeoutError
		hs     *quic.HandshakeTimeoutError
		te     *quic.TransportError
		app    *quic.ApplicationError
		reset  *quic.StatelessResetError
		netErr net.Error
	)
	switch {
	case errors.As(err, &idle), errors.As(err, &hs):
		return DialTimeout
	case errors.As(err, &te) && te.ErrorCode.IsCryptoError():
		return DialTLS
	case errors.As(err, &app), errors.As(err, &reset), errors.As(err, &te), errors.Is(err, syscall.ECONNREFUSED):
		return DialRefused
	case errors.As(err, &netErr) && netErr.Timeout():
		return DialTimeout
	}
	return DialOther
}

// NewClient checks cfg and returns a Client; Run starts it.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Region == "" {
		return nil, errors.New("backbone client: region name is empty")
	}
	raddr, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("backbone client: region %s: address %q: %w", cfg.Region, cfg.Addr, err)
	}
	if cfg.TLS == nil && cfg.TLSConfigs == nil {
		return nil, fmt.Errorf("backbone client: region %s: no TLS configuration", cfg.Region)
	}
	if cfg.Connections <= 0 {
		cfg.Connections = DefaultConnections
	}
	cfg.Stripe.setDefaults()
	cfg.FEC.setDefaults()
	cfg.Retire.setDefaults()
	cfg.Stripe.Lanes = min(cfg.Stripe.Lanes, cfg.Connections)
	if cfg.TLS != nil {
		tlsConf := cfg.TLS.Clone()
		if tlsConf.ServerName == "" {
			tlsConf.ServerName = cfg.Region
		}
		cfg.TLS = tlsConf
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		rules:     cfg.CustomRules,
		cfg:       cfg,
		raddr:     raddr,
		qconf:     quicConfig(cfg.KeepAlivePeriod, cfg.IdleTimeout),
		log:       logger.With("component", "backbone-client", "region", cfg.Region),
		changed:   make(chan struct{}, 1),
		stateSubs: map[chan struct{}]struct{}{},
		now:       time.Now,
	}
	for i := range cfg.Connections {
		c.slots = append(c.slots, &slot{idx: i})
	}
	return c, nil
}

// Region returns the region's name.
func (c *Client) Region() string { return c.cfg.Region }

// Offers reports whether the region serves an optional feature: its hello
// on the last connection that spoke listed capability cp (wire.CapHold,
// wire.CapTLS, …).
func (c *Client) Offers(cp string) bool {
	caps := c.caps.Load()
	return caps != nil && slices.Contains(*caps, cp)
}

// Run dials the pool and keeps it up until ctx ends, then closes every
// connection with a shutdown code. It returns nil on a clean stop.
func (c *Client) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range c.slots {
		wg.Go(func() { c.maintain(ctx, s) })
	}
	wg.Wait()
	return nil
}

// maintain keeps one slot's connection up.
func (c *Client) maintain(ctx context.Context, s *slot) {
	log := c.log.With("conn", s.idx)
	listen := c.cfg.ListenUDP
	if listen == nil {
		listen = func() (*net.UDPConn, error) { return net.ListenUDP("udp", nil) }
	}
	udp, err := listen()
	if err != nil {
		log.Error("backbone socket", "err", err)
		return
	}
	SetSocketBuffers(udp, c.log)
	pc := newICMPConn(udp)
	icmp, _ := pc.(*icmpConn)
	var fc *fec.Conn
	if fp, ok := pc.(fec.PacketConn); ok {
		if fc = wrapFEC(fp, c.cfg.FEC.Off); fc != nil {
			pc = fc
			s.fec.Store(fc)
		}
	}
	tr := &quic.Transport{Conn: pc}
	var drains sync.WaitGroup // the slot's retired connections
	defer func() {
		drains.Wait()
		_ = tr.Close()
		if fc != nil {
			_ = fc.Close()
		}
		_ = udp.Close()
	}()
	backoff := time.Duration(0)
	failures := 0 // dials failed in a row: only the first is logged above debug
	for ctx.Err() == nil {
		if backoff > 0 {
			t := time.NewTimer(jitter(backoff))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		s.state.Store(uint32(SlotDialing))
		c.dials.Add(1)
		conn, err := c.dial(ctx, tr, icmp)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.dialFailures[classifyDial(err)].Add(1)
			s.state.Store(uint32(SlotBackoff))
			backoff = nextBackoff(backoff)
			failures++
			level := slog.LevelDebug
			if failures == 1 {
				level = slog.LevelWarn
			}
			log.Log(ctx, level, "backbone dial failed", "addr", c.cfg.Addr, "err", err, "retry_in", backoff,
				"failures", failures)
			continue
		}
		if failures > 0 {
			log.Info("backbone dial succeeded", "addr", c.cfg.Addr, "after_failures", failures)
			failures = 0
		}
		switch c.serveConn(ctx, s, conn, log, &drains) {
		case connLost, connRetired:
			// The replacement dial starts at once; failures back off from
			// there. A retired connection keeps taking new flows until its
			// replacement is established.
			backoff = 0
		case connNeverUp:
			c.dialFailures[DialRefused].Add(1)
			s.state.Store(uint32(SlotBackoff))
			backoff = nextBackoff(backoff)
		}
	}
}

// errPortUnreachable is the cause of a dial cancelled by an ICMP
// port-unreachable: nothing listens on the region's port.
var errPortUnreachable = errors.New("port unreachable: nothing listens on the region's backbone port")

// dial runs one QUIC handshake with the region. With icmp set, a
// port-unreachable in answer to the handshake fails it at once.
func (c *Client) dial(ctx context.Context, tr *quic.Transport, icmp *icmpConn) (*quic.Conn, error) {
	if icmp == nil {
		return tr.Dial(ctx, c.raddr, c.tlsConfig(), c.qconf)
	}
	dctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	icmp.setOnRefused(func(err error) { cancel(fmt.Errorf("%w (%w)", errPortUnreachable, err)) })
	defer icmp.setOnRefused(nil)
	conn, err := tr.Dial(dctx, c.raddr, c.tlsConfig(), c.qconf)
	if err != nil && ctx.Err() == nil {
		if cause := context.Cause(dctx); errors.Is(cause, errPortUnreachable) {
			err = cause
		}
	}
	return conn, err
}

// tlsConfig returns the TLS configuration for the next dial.
func (c *Client) tlsConfig() *tls.Config {
	if c.cfg.TLSConfigs == nil {
		return c.cfg.TLS
	}
	conf := c.cfg.TLSConfigs()
	if conf.ServerName == "" {
		conf.ServerName = c.cfg.Region
	}
	return conf
}

// connEnd is how serveConn left a connection.
type connEnd uint8

const (
	// connNeverUp: the connection ended before the region answered.
	connNeverUp connEnd = iota
	// connLost: the established connection ended (or ctx did).
	connLost
	// connRetired: the connection was retired (retire.go); it still takes
	// new flows until a replacement is established, then drains.
	connRetired
)

// serveConn runs conn's control stream, publishes conn in the slot once
// the region has answered on it (a region that refuses our certificate
// lets the QUIC dial succeed and closes right after, so a completed dial
// alone proves nothing), and returns when the connection dies or ctx ends,
// or at once when the connection is retired: then a goroutine joined by
// drains serves it until it has drained.
func (c *Client) serveConn(ctx context.Context, s *slot, conn *quic.Conn, log *slog.Logger, drains *sync.WaitGroup) connEnd {
	pc := newPooled(conn)
	established := make(chan struct{})
	retire := make(chan struct{})
	done := make(chan struct{})
	waitDatagrams := c.startDatagrams(conn)
	fp := &fecPath{conn: s.fec.Load(), addr: conn.RemoteAddr()}
	go func() {
		defer close(done)
		if err := c.control(s, pc, fp, established, retire, log); err != nil && ctx.Err() == nil && !connClosed(err) {
			log.Warn("control stream failed; closing connection", "err", err)
			_ = conn.CloseWithError(wire.ConnProtocol, "control stream failed")
		}
	}()
	up := false
	select {
	case <-established:
		up = true
		s.state.Store(uint32(SlotUp))
		// The handshake's RTT is the first sample of the routing RTT.
		hs := conn.ConnectionStats().MinRTT
		c.rtt.observe(c.now(), hs)
		if old := s.conn.Swap(pc); old != nil {
			// A retired connection's replacement: new flows come here now.
			old.handOver()
			if s.retire.replaced(&c.cfg.Retire, c.now(), hs) {
				log.Info("backbone connection replaced; the path is long, its new minimum RTT is the baseline",
					"min_rtt", hs)
			}
		}
		c.signal()
		log.Info("backbone connected", "addr", c.cfg.Addr, "local", conn.LocalAddr().String(),
			"resumed", conn.ConnectionState().TLS.DidResume, "gso", conn.ConnectionState().GSO, "min_rtt", hs)
	case <-conn.Context().Done():
	case <-ctx.Done():
	}
	finish := func() {
		if s.conn.CompareAndSwap(pc, nil) {
			// It ended while it still took new flows: whatever retirement
			// was pending, the slot now redials as after any loss.
			s.retire.abandoned()
		}
		<-done
		fp.end()
		waitDatagrams()
		if !c.Reachable() {
			c.rtt.reset()
			c.health.Store(nil)
			c.load.Store(nil)
			c.fleet.Store(nil)
			c.forgetCustom()
		}
		c.signal()
	}
	select {
	case <-ctx.Done():
		_ = conn.CloseWithError(wire.ConnShutdown, "edge shutting down")
	case <-conn.Context().Done():
		if up {
			c.lost.Add(1)
		}
		c.logEnd(log, conn, up)
	case <-retire:
		s.draining.Add(1)
		drains.Go(func() {
			defer s.draining.Add(-1)
			c.drain(ctx, pc, log)
			finish()
		})
		return connRetired
	}
	finish()
	if up {
		return connLost
	}
	return connNeverUp
}

// logEnd logs the end of a connection the pool did not close itself.
func (c *Client) logEnd(log *slog.Logger, conn *quic.Conn, established bool) {
	cause := context.Cause(conn.Context())
	if regionShutdown(cause) {
		log.Info("backbone connection closed by the region", "established", established, "err", cause)
	} else {
		log.Warn("backbone connection lost", "established", established, "err", cause)
	}
}

// drain serves a retired connection: it keeps taking new flows until its
// replacement is established, then carries the flows it has until the last
// ends or cfg.Retire.Drain has passed, and closes. It returns when the
// connection has closed or ctx ends.
func (c *Client) drain(ctx context.Context, pc *pooled, log *slog.Logger) {
	conn := pc.conn
	replaced := pc.replaced // nil once the replacement took the slot
	var (
		idle  <-chan struct{}
		limit <-chan time.Time
	)
	for {
		select {
		case <-replaced:
			replaced, idle = nil, pc.idle
			t := time.NewTimer(c.cfg.Retire.Drain)
			defer t.Stop()
			limit = t.C
		case <-idle:
		case <-limit:
			log.Warn("retired backbone connection closed at its drain limit", "open_streams", pc.streams.Load(),
				"drain", c.cfg.Retire.Drain)
			_ = conn.CloseWithError(wire.ConnRetired, "retired: drain limit")
			return
		case <-conn.Context().Done():
			c.logEnd(log, conn, true)
			return
		case <-ctx.Done():
			_ = conn.CloseWithError(wire.ConnShutdown, "edge shutting down")
			return
		}
		if replaced == nil && pc.streams.Load() == 0 {
			log.Debug("retired backbone connection drained")
			_ = conn.CloseWithError(wire.ConnRetired, "retired")
			return
		}
	}
}

// control runs the edge side of one control stream: hello and the edge's
// state out, health, load and the fleet's states in. The hello says the
// edge speaks FEC when its socket is wrapped; if the region's says so too,
// FEC is turned on once the connection's minimum RTT reaches FEC.MinRTT
// (the path's length: a smoothed RTT also counts queues and a busy host's
// stalls, which a near path's window rides out in milliseconds)
// (checked at every message: the region speaks at least once a second).
//
// Every message is also a sample for the retirement rule (retire.go):
// when it says so, control logs the retirement, counts it and closes
// retire, once.
func (c *Client) control(s *slot, pc *pooled, fp *fecPath, established, retire chan<- struct{}, log *slog.Logger) error {
	conn := pc.conn
	watch := riseWatch{cfg: &c.cfg.Retire}
	str, err := conn.OpenStream()
	if err != nil {
		return err
	}
	defer str.CancelRead(wire.StreamShutdown)
	b, _ := wire.AppendHeader(nil, &wire.Header{Kind: wire.KindControl})
	if _, err := str.Write(b); err != nil {
		return err
	}
	hello := c.cfg.Hello
	hello.Proto = wire.ControlProto
	if fp.conn != nil {
		hello.Caps = append(slices.Clone(hello.Caps), wire.CapFEC)
	}
	fecCap, fecOn := false, false
	if err := wire.WriteMsg(str, wire.MsgHello, hello); err != nil {
		return err
	}
	// One goroutine writes the edge's state from now on; this one reads.
	notify := make(chan struct{}, 1)
	c.stateMu.Lock()
	c.stateSubs[notify] = struct{}{}
	c.stateMu.Unlock()
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() { c.sendStates(str, notify, stop) })
	defer func() {
		c.stateMu.Lock()
		delete(c.stateSubs, notify)
		c.stateMu.Unlock()
		close(stop)
		str.CancelWrite(wire.StreamShutdown)
		writer.Wait()
	}()
	r := bufio.NewReader(str)
	for {
		t, body, err := wire.ReadMsg(r)
		if err != nil {
			if conn.Context().Err() != nil {
				return nil
			}
			return err
		}
		// The region speaks at least once a second (load): a steady
		// sample of the connection's RTT for the routing RTT.
		stats := conn.ConnectionStats()
		now := c.now()
		c.rtt.observe(now, stats.LatestRTT)
		if retire != nil && !c.cfg.Retire.Off && s.conn.Load() == pc &&
			watch.observe(now, stats, pc.streams.Load() == 0) && s.retire.allow(now) {
			s.retire.retired(&c.cfg.Retire, now, stats.MinRTT)
			c.retired[RetireRTTRise].Add(1)
			log.Info("retiring backbone connection: its RTT rose far above its minimum; a replacement dials",
				"reason", RetireRTTRise.String(), "min_rtt", stats.MinRTT, "smoothed_rtt", stats.SmoothedRTT,
				"latest_rtt", stats.LatestRTT, "local", conn.LocalAddr().String())
			close(retire)
			retire = nil
		}
		switch t {
		case wire.MsgHello:
			// A region of control protocol 4 says what it serves.
			var h wire.Hello
			if err := json.Unmarshal(body, &h); err != nil {
				return fmt.Errorf("hello message: %w", err)
			}
			c.stripeCap.Store(h.Has(wire.CapStripe))
			c.caps.Store(&h.Caps)
			fecCap = fp.conn != nil && h.Has(wire.CapFEC)
		case wire.MsgHealth:
			var h wire.Health
			if err := json.Unmarshal(body, &h); err != nil {
				return fmt.Errorf("health message: %w", err)
			}
			c.applyHealth(h)
			if established != nil {
				close(established)
				established = nil
			}
		case wire.MsgLoad:
			var l wire.Load
			if err := json.Unmarshal(body, &l); err != nil {
				return fmt.Errorf("load message: %w", err)
			}
			c.load.Store(&l)
		case wire.MsgFleet:
			var f wire.Fleet
			if err := json.Unmarshal(body, &f); err != nil {
				return fmt.Errorf("fleet message: %w", err)
			}
			c.fleet.Store(&f.Edges)
			c.signal()
		case wire.MsgCustomRouting:
			var m wire.CustomRouting
			if err := json.Unmarshal(body, &m); err != nil {
				return fmt.Errorf("custom routing message: %w", err)
			}
			c.applyCustom(m)
		default:
			// A newer region may send messages this edge does not know.
		}
		if fecCap && !fecOn && stats.MinRTT >= c.cfg.FEC.MinRTT {
			if fecOn = fp.enable(); !fecOn {
				c.log.Warn("could not turn FEC on", "local", conn.LocalAddr().String())
				fecCap = false
			}
		}
	}
}

// sendStates writes the edge's state on a control stream whenever it
// changes, and an RTT probe every wire.ProbeInterval, until stop closes or
// a write fails. Without the probes an idle edge sends nothing its peer
// acknowledges, and its connection's latest RTT sample — what the routing
// RTT and the hedge delay are made of — would stay whatever it was when
// the edge last sent something, however the path has changed since.
func (c *Client) sendStates(str *quic.Stream, notify, stop <-chan struct{}) {
	var sent *wire.EdgeState
	probe := time.NewTicker(wire.ProbeInterval)
	defer probe.Stop()
	for {
		c.stateMu.Lock()
		cur := c.state
		c.stateMu.Unlock()
		if cur != nil && cur != sent {
			if err := wire.WriteMsg(str, wire.MsgEdgeState, cur); err != nil {
				return
			}
			sent = cur
		}
		select {
		case <-notify:
		case <-probe.C:
			if err := wire.WriteMsg(str, wire.MsgProbe, struct{}{}); err != nil {
				return
			}
		case <-stop:
			return
		}
	}
}

// SetEdgeState sets what this edge says of itself on every control stream
// to the region, now and on every connection to come. Regions of control
// protocol 2 relay it to the other edges.
func (c *Client) SetEdgeState(st wire.EdgeState) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.state = &st
	for ch := range c.stateSubs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Fleet returns the edge states the region relayed last; ok is false when
// it relayed none (a region of control protocol 1) or is unreachable.
func (c *Client) Fleet() (edges []wire.EdgeState, ok bool) {
	p := c.fleet.Load()
	if p == nil {
		return nil, false
	}
	return *p, true
}

// connClosed reports whether err ended a stream because its whole
// connection closed (by either end, or by the idle timeout) or because the
// peer is shutting down, as opposed to a failure of the stream itself; the
// connection's end is logged once, by serveConn.
func connClosed(err error) bool {
	var (
		app   *quic.ApplicationError
		idle  *quic.IdleTimeoutError
		trans *quic.TransportError
		reset *quic.StatelessResetError
		str   *quic.StreamError
	)
	if errors.As(err, &str) {
		return str.ErrorCode == wire.StreamShutdown
	}
	return errors.As(err, &app) || errors.As(err, &idle) || errors.As(err, &trans) || errors.As(err, &reset)
}

// regionShutdown reports whether err is the region closing the connection
// because it is stopping.
func regionShutdown(err error) bool {
	var app *quic.ApplicationError
	return errors.As(err, &app) && app.Remote && app.ErrorCode == wire.ConnShutdown
}

func (c *Client) applyHealth(h wire.Health) {
	next := make(map[string]bool, len(h.Endpoints))
	if old := c.health.Load(); old != nil && !h.Full {
		for k, v := range *old {
			next[k] = v
		}
	}
	changed := false
	old := c.health.Load()
	for _, e := range h.Endpoints {
		next[e.ID] = e.Healthy
		if old == nil || (*old)[e.ID] != e.Healthy {
			changed = true
		}
		if old != nil && (*old)[e.ID] != e.Healthy {
			c.log.Info("endpoint health changed", "endpoint", e.ID, "healthy", e.Healthy, "reason", e.Reason)
		}
	}
	c.health.Store(&next)
	if changed || h.Full {
		c.signal()
	}
}

func (c *Client) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Changes signals (coalesced) whenever reachability, health or the
// relayed fleet changed.
func (c *Client) Changes() <-chan struct{} { return c.changed }

// Reachable reports whether at least one connection is up.
func (c *Client) Reachable() bool {
	for _, s := range c.slots {
		if s.current() != nil {
			return true
		}
	}
	return false
}

// EndpointHealthy reports the region's view of an endpoint; known is false
// when the region has not reported it (or is unreachable).
func (c *Client) EndpointHealthy(id string) (healthy, known bool) {
	m := c.health.Load()
	if m == nil || !c.Reachable() {
		return false, false
	}
	healthy, known = (*m)[id]
	return healthy, known
}

// Load returns the region's last load report; ok is false when the region
// has sent none or is unreachable.
func (c *Client) Load() (l wire.Load, ok bool) {
	p := c.load.Load()
	if p == nil || !c.Reachable() {
		return wire.Load{}, false
	}
	return *p, true
}

// Stats is the measured state of the pool.
type Stats struct {
	Live int
	// SmoothedRTT is the best smoothed RTT of the live connections;
	// RoutingRTT the figure the router orders regions by (RTT).
	SmoothedRTT, RoutingRTT time.Duration
	// LossRatio is packets lost over packets sent, across live connections.
	LossRatio   float64
	OpenStreams int64
	// Slots is each connection of the pool.
	Slots []SlotStats
	// Dials counts connection attempts since the client started;
	// DialFailures the failed ones, indexed by DialFailure; Lost the
	// established connections that died (each is redialled).
	Dials        int64
	DialFailures [numDialFailures]int64
	Lost         int64
	// Retired counts the connections the pool retired, indexed by
	// RetireReason (retire.go); Draining is how many of them are still
	// open for the flows they carry.
	Retired  [numRetireReasons]int64
	Draining int
	// DroppedDatagrams: see Client.DroppedDatagrams.
	DroppedDatagrams int64
	// PacketsSent and PacketsLost add up the live connections' QUIC
	// counters: packets sent, and packets quic-go declared lost (each cut
	// the window unless found spurious).
	PacketsSent, PacketsLost uint64
}

// SlotStats is one connection of the pool.
type SlotStats struct {
	State SlotState
	// SmoothedRTT and MinRTT are the connection's; zero unless up. MinRTT
	// is its baseline for retirement (retire.go).
	SmoothedRTT, MinRTT time.Duration
	LossRatio           float64
	// OpenStreams counts the slot's open streams, those on its draining
	// connections included.
	OpenStreams int64
	// Draining is how many retired connections of the slot are still open.
	Draining int
}

// Stats reports the pool's live connections, best smoothed RTT and loss,
// each connection's state and the dial counters.
func (c *Client) Stats() Stats {
	st := Stats{Dials: c.dials.Load(), Lost: c.lost.Load(), DroppedDatagrams: c.DroppedDatagrams()}
	for i := range c.dialFailures {
		st.DialFailures[i] = c.dialFailures[i].Load()
	}
	for i := range c.retired {
		st.Retired[i] = c.retired[i].Load()
	}
	var sent, lost uint64
	for _, s := range c.slots {
		ss := SlotStats{State: SlotState(s.state.Load()), Draining: int(s.draining.Load())}
		st.Draining += ss.Draining
		conn := s.current()
		if conn == nil {
			if ss.State == SlotUp {
				ss.State = SlotDialing // between the loss and the next dial
			}
			st.Slots = append(st.Slots, ss)
			continue
		}
		st.Live++
		ss.State = SlotUp
		ss.OpenStreams = s.active.Load()
		st.OpenStreams += ss.OpenStreams
		cs := conn.ConnectionStats()
		ss.SmoothedRTT, ss.MinRTT = cs.SmoothedRTT, cs.MinRTT
		if cs.PacketsSent > 0 {
			ss.LossRatio = float64(cs.PacketsLost) / float64(cs.PacketsSent)
		}
		st.Slots = append(st.Slots, ss)
		if st.SmoothedRTT == 0 || cs.SmoothedRTT < st.SmoothedRTT {
			st.SmoothedRTT = cs.SmoothedRTT
		}
		sent += cs.PacketsSent
		lost += cs.PacketsLost
	}
	st.PacketsSent, st.PacketsLost = sent, lost
	if sent > 0 {
		st.LossRatio = float64(lost) / float64(sent)
	}
	if st.Live > 0 {
		st.RoutingRTT, _ = c.RTT()
	}
	return st
}

// RTT returns the routing RTT of the region: the minimum RTT its
// connections measured over the last RTTWindow, with hysteresis (rtt.go);
// ok is false when the region is unreachable.
func (c *Client) RTT() (time.Duration, bool) {
	var best time.Duration
	ok := false
	for _, s := range c.slots {
		conn := s.current()
		if conn == nil {
			continue
		}
		if !ok {
			if v := c.rtt.value(); v > 0 {
				return v, true
			}
		}
		// No sample yet (a connection just published): its smoothed RTT.
		rtt := conn.ConnectionStats().SmoothedRTT
		if !ok || rtt < best {
			best, ok = rtt, true
		}
	}
	return best, ok
}

// Stream is an open data stream; Release must be called once when the flow
// has ended. A TCP flow to a region that can take it may be striped over
// several connections (striped.go); its methods hide that.
type Stream struct {
	*quic.Stream
	slot *slot
	pc   *pooled
	conn *quic.Conn
	// since is the connection's silence from the moment the stream opened.
	since Silence
	st    *striped
	// held: the header asked for held delivery (the answer to an OK says
	// which candidate won).
	held bool
}

// Silence watches a connection from one moment on: whether the peer has
// sent anything at all since. A flow's header is ack-eliciting, so a
// region that is alive acknowledges it within one RTT plus its ack delay
// (25 ms) whether or not its endpoint answers; a stream whose connection
// stays silent for longer is waiting on a region (or path) that is gone,
// not on a slow endpoint.
type Silence struct {
	conn *quic.Conn
	rx   uint64 // packets received at the start
}

// Silent reports whether no packet arrived since the start (whether or
// not the connection has closed since).
func (s Silence) Silent() bool {
	return s.conn != nil && s.conn.ConnectionStats().PacketsReceived == s.rx
}

// Closed reports whether the connection has closed.
func (s Silence) Closed() bool { return s.conn != nil && s.conn.Context().Err() != nil }

// Silence returns the silence of the stream's connection since the stream
// opened.
func (s Stream) Silence() Silence { return s.since }

// Release returns the stream's share of its connection's load.
func (s Stream) Release() {
	s.slot.active.Add(-1)
	s.pc.release()
}

// OpenStream opens a stream on the live connection that can take it best
// (see openStream). It never waits for a dead connection: with none live
// it fails with ErrUnreachable.
func (c *Client) OpenStream(ctx context.Context) (Stream, error) {
	return c.openStream(ctx, nil)
}

// rate is a connection's recent delivery rate: its congestion window over
// its minimum RTT (what it can carry now over its path; a loss on the path
// cuts the window). The minimum, not the smoothed RTT: the smoothed one
// also counts a busy host's stalls (under two test suites at once on two
// cores, an idle loopback connection's smoothed RTT went past twice the
// other's and the pool put a second flow on the loaded one), while a
// congested path shows in the window its losses cut. RTTs under 10 ms
// count as 10 ms, so that near paths that carry the same rank the same.
func rate(conn *quic.Conn) float64 {
	st := conn.ConnectionStats()
	return float64(st.CongestionWindow) / max(st.MinRTT, 10*time.Millisecond).Seconds()
}

// openStream opens a stream on the live connection that can take it best,
// skipping the slots in exclude (a striped flow's lanes go to different
// connections): the least loaded among those whose delivery rate is at
// least half the best one, so that a connection whose window a loss has
// just cut takes no new flows while the others can; ties go to the higher
// rate, then the lowest slot.
func (c *Client) openStream(ctx context.Context, exclude []*slot) (Stream, error) {
	type cand struct {
		s    *slot
		pc   *pooled
		rate float64
	}
	for range 2 {
		var cands []cand
		top := 0.0
		for _, s := range c.slots {
			pc := s.conn.Load()
			if pc == nil || pc.conn.Context().Err() != nil || slices.Contains(exclude, s) {
				continue
			}
			r := rate(pc.conn)
			top = max(top, r)
			cands = append(cands, cand{s, pc, r})
		}
		var best *cand
		for i, k := range cands {
			if k.rate < top/2 {
				continue
			}
			if best == nil || k.pc.streams.Load() < best.pc.streams.Load() ||
				(k.pc.streams.Load() == best.pc.streams.Load() && k.rate > best.rate) {
				best = &cands[i]
			}
		}
		if best == nil {
			return Stream{}, fmt.Errorf("%s: %w", c.cfg.Region, ErrUnreachable)
		}
		s, pc := best.s, best.pc
		s.active.Add(1)
		pc.streams.Add(1)
		if s.conn.Load() != pc {
			// A replacement took the slot since (a retired connection
			// drains from the moment it has none open): go there.
			s.active.Add(-1)
			pc.release()
			continue
		}
		since := Silence{conn: pc.conn, rx: pc.conn.ConnectionStats().PacketsReceived}
		str, err := pc.conn.OpenStreamSync(ctx)
		if err == nil {
			return Stream{Stream: str, slot: s, pc: pc, conn: pc.conn, since: since}, nil
		}
		s.active.Add(-1)
		pc.release()
		if ctx.Err() != nil {
			return Stream{}, err
		}
		// The connection died under us: try the next one once.
	}
	return Stream{}, fmt.Errorf("%s: %w", c.cfg.Region, ErrUnreachable)
}

const maxBackoff = 5 * time.Second

func nextBackoff(d time.Duration) time.Duration {
	if d <= 0 {
		return 200 * time.Millisecond
	}
	return min(2*d, maxBackoff)
}

// jitter spreads d over [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// Hello builds the hello an edge sends: its node name and build version.
func Hello(node, version string) wire.Hello {
	return wire.Hello{Node: node, Version: version, Proto: wire.ControlProto}
}

// FECStats returns the counters of forward error correction over the
// pool's sockets.
func (c *Client) FECStats() FECStats {
	var st FECStats
	for _, s := range c.slots {
		if fc := s.fec.Load(); fc != nil {
			addFECStats(&st, fc.Stats())
		}
	}
	return st
}

// FECPaths is how many connections of the pool have FEC on.
func (c *Client) FECPaths() int {
	n := 0
	for _, s := range c.slots {
		if fc := s.fec.Load(); fc != nil && fc.Enabled(c.raddr) {
			n++
		}
	}
	return n
}
