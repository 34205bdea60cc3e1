package node

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/flowlog"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/bgp"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/udp"
)

// errDrained ends an edge once a drain has run its course.
var errDrained = errors.New("drain complete")

// accelView is what readiness needs to know about one accelerator.
type accelView struct {
	name     string
	prefixes []netip.Prefix
	// zones are the network zones of prefixes ("": none); serves says
	// which zones this PoP serves (nil: all).
	zones  []string
	serves func(zone string) bool
}

// edgeNode runs an edge: listeners, backbone clients, BGP speaker, and the
// supervisor goroutine that owns readiness, the drain state and reloads.
type edgeNode struct {
	opts  Options
	name  string
	store *pki.Store
	// pop is the PoP's section as the edge started: its fixed settings
	// (fixed.go) stay in force until a restart.
	pop      *config.PoP
	anycast  map[netip.Addr]func() error // addresses added to lo (manage_addresses); supervisor
	changes  chan struct{}               // a backbone client's state changed
	log      *slog.Logger
	e        *edge.Edge
	fwd      *udp.Forwarder
	speaker  *bgp.Speaker    // nil without BGP neighbours
	flowLogs *flowlog.Writer // nil when off
	dns      *edgeDNS        // nil without a dns section
	cmds     chan command
	status   atomic.Pointer[EdgeStatus]
	// live is the document in force, compiled; the supervisor replaces
	// it on a reload, everyone else only reads it.
	live atomic.Pointer[edgeLive]
	// cfg keeps the document and the record of reloads (supervisor).
	cfg *reloader
	// bb runs the backbone clients; clients are the running ones, owned
	// by the supervisor once it runs.
	bb      *stage
	clients map[*backbone.Client]*clientRun
	// epoch, seq and said are what this edge last told the regions of
	// itself (wire.EdgeState); owned by the supervisor.
	epoch int64
	seq   uint64
	said  *wire.EdgeState
}

// edgeLive is what an edge runs of the document: immutable, replaced
// whole by a reload.
type edgeLive struct {
	doc *config.Document // overrides applied
	n   config.Node      // points into doc
	// listeners are every listener, TCP and UDP, with its meter.
	listeners []edge.Listener
	// removed are the listeners reloads removed, with their meters:
	// their counters stay in /status and the metrics.
	removed   []edge.Listener
	accels    []accelView
	custom    *customPlan
	endpoints map[string]gateway.Endpoint // for flow logs
	// regions are the backbone clients of the regions the listeners
	// route to; clients the same, in topology order.
	regions edge.Regions
	clients []*backbone.Client
}

type command struct {
	drain bool // false: undrain
	done  chan error
}

// EdgeStatus is the edge's status snapshot, served at /status. The shape
// is documented in docs/status.md.
type EdgeStatus struct {
	Node         string             `json:"node"`
	Role         string             `json:"role"`
	Version      string             `json:"version"`
	Ready        bool               `json:"ready"`
	Draining     bool               `json:"draining"`
	DrainPhase   string             `json:"drain_phase,omitempty"`
	Accelerators []AcceleratorState `json:"accelerators"`
	Listeners    []ListenerStatus   `json:"listeners"`
	// RemovedListeners are listeners a reload removed, with their
	// counters (the flows it cut among them: listener_removed); a reload
	// that adds one back moves it to Listeners.
	RemovedListeners []ListenerStatus `json:"removed_listeners,omitempty"`
	Regions          []RegionState    `json:"regions"`
	// Flows sums the listeners' counters.
	Flows     FlowCounters   `json:"flows"`
	BGP       []BGPPeerState `json:"bgp_peers,omitempty"`
	FlowLogs  *FlowLogStatus `json:"flow_logs,omitempty"`
	Announced []netip.Prefix `json:"announced,omitempty"`
	// DNS is the authoritative DNS server, with a dns section.
	DNS *DNSStatus `json:"dns,omitempty"`
	// CustomRouting is set when the document has custom routing
	// accelerators: their subnets' blocks and each region's state.
	CustomRouting *EdgeCustomStatus `json:"custom_routing,omitempty"`
	// Config is the document in force and the reloads.
	Config ConfigStatus `json:"config"`

	// live is what the snapshot was made from: Status reads the
	// counters of these listeners.
	live *edgeLive
}

// AcceleratorState says whether the edge can serve an accelerator.
type AcceleratorState struct {
	Name string `json:"name"`
	// Ready is set when every listener of the accelerator is ready.
	Ready bool `json:"ready"`
	// FailOpen is set when some listener of the accelerator fails open.
	FailOpen bool `json:"fail_open"`
	// Zones are the network zones of the accelerator this PoP serves
	// (absent: the accelerator has no zones).
	Zones []string `json:"zones,omitempty"`
}

// ListenerStatus is one listener: readiness and cumulative counters.
type ListenerStatus struct {
	Key         string      `json:"key"`
	Accelerator string      `json:"accelerator"`
	Protocol    string      `json:"protocol"`
	Ports       []PortRange `json:"ports"`
	// Ready is set when the listener is bound and a reachable region has
	// a healthy endpoint of weight above zero for it.
	Ready bool `json:"ready"`
	// FailOpen is set when a region is reachable but none of the
	// listener's endpoints there is healthy: flows are then spread over
	// all of them.
	FailOpen bool `json:"fail_open"`
	FlowCounters
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	From uint16 `json:"from"`
	To   uint16 `json:"to"`
}

// FlowCounters are a listener's cumulative counters (or their sum):
// a dashboard computes rates from two snapshots.
type FlowCounters struct {
	ActiveFlows int64  `json:"active_flows"`
	NewFlows    int64  `json:"new_flows"`
	BytesIn     uint64 `json:"bytes_in"`
	BytesOut    uint64 `json:"bytes_out"`
	PacketsIn   uint64 `json:"packets_in"`
	PacketsOut  uint64 `json:"packets_out"`
	Retries     uint64 `json:"retries"`
	Hedges      uint64 `json:"hedges"`
	EarlyData   uint64 `json:"early_data"`
	// Closed counts served flows that ended, by reason; Refused flows
	// refused or failed before they were served, by reason. Every reason
	// of the list is present.
	Closed  map[string]uint64 `json:"closed"`
	Refused map[string]uint64 `json:"refused"`
	// UDP is set for UDP listeners.
	UDP *UDPCounters `json:"udp,omitempty"`
}

// UDPCounters count a UDP listener's packets by how the backbone carried
// them, and those dropped at the edge by place.
type UDPCounters struct {
	DatagramsIn  uint64            `json:"datagrams_in"`
	DatagramsOut uint64            `json:"datagrams_out"`
	FallbackIn   uint64            `json:"fallback_in"`
	FallbackOut  uint64            `json:"fallback_out"`
	Dropped      map[string]uint64 `json:"dropped"`
}

func flowCounters(c flow.Counters, udp bool) FlowCounters {
	fc := FlowCounters{
		ActiveFlows: c.Active, NewFlows: c.Flows, BytesIn: c.BytesIn, BytesOut: c.BytesOut,
		PacketsIn: c.PacketsIn, PacketsOut: c.PacketsOut, Retries: c.Retries, Hedges: c.Hedges, EarlyData: c.EarlyData,
		Closed: map[string]uint64{}, Refused: map[string]uint64{},
	}
	for _, r := range flow.Reasons {
		if r.Refused() {
			fc.Refused[r.String()] = c.Ended(r)
		} else {
			fc.Closed[r.String()] = c.Ended(r)
		}
	}
	if udp {
		fc.UDP = &UDPCounters{DatagramsIn: c.DatagramsIn, DatagramsOut: c.DatagramsOut,
			FallbackIn: c.FallbackIn, FallbackOut: c.FallbackOut, Dropped: map[string]uint64{}}
		for _, p := range flow.Places {
			fc.UDP.Dropped[p.String()] = c.Dropped[p]
		}
	}
	return fc
}

// RegionState is the edge's view of one region: its backbone pool.
type RegionState struct {
	Name        string `json:"name"`
	Reachable   bool   `json:"reachable"`
	Connections int    `json:"connections"`
	// RTTMillis is the routing RTT (what regions are ordered by: the
	// minimum over a window, with hysteresis); SmoothedRTTMillis the best
	// smoothed RTT of the pool's connections.
	RTTMillis         float64 `json:"rtt_ms"`
	SmoothedRTTMillis float64 `json:"smoothed_rtt_ms"`
	LossRatio         float64 `json:"loss_ratio"`
	OpenStreams       int64   `json:"open_streams"`
	// Pool is each connection of the pool.
	Pool []PoolConn `json:"pool"`
	// Dials counts connection attempts, DialFailures the failed ones by
	// reason, Reconnects the established connections that died, Retired
	// the live ones the pool replaced by reason (rtt_rise), Draining those
	// of them still open for their flows.
	Dials            int64            `json:"dials"`
	DialFailures     map[string]int64 `json:"dial_failures"`
	Reconnects       int64            `json:"reconnects"`
	Retired          map[string]int64 `json:"retired"`
	Draining         int              `json:"draining"`
	DroppedDatagrams int64            `json:"dropped_datagrams"`
}

// PoolConn is one connection of a backbone pool.
type PoolConn struct {
	// State is "up", "dialing" or "backoff".
	State     string  `json:"state"`
	RTTMillis float64 `json:"rtt_ms"`
	// MinRTTMillis is the minimum RTT the connection measured: its
	// baseline for retirement.
	MinRTTMillis float64 `json:"min_rtt_ms"`
	LossRatio    float64 `json:"loss_ratio"`
	OpenStreams  int64   `json:"open_streams"`
	// Draining is how many retired connections of the slot are still open.
	Draining int `json:"draining"`
}

func regionState(name string, s backbone.Stats) RegionState {
	rs := RegionState{
		Name: name, Reachable: s.Live > 0, Connections: s.Live,
		RTTMillis: millis(s.RoutingRTT), SmoothedRTTMillis: millis(s.SmoothedRTT), LossRatio: s.LossRatio, OpenStreams: s.OpenStreams,
		Dials: s.Dials, DialFailures: map[string]int64{}, Reconnects: s.Lost, Retired: map[string]int64{},
		Draining: s.Draining, DroppedDatagrams: s.DroppedDatagrams,
	}
	for _, f := range backbone.DialFailures {
		rs.DialFailures[f.String()] = s.DialFailures[f]
	}
	for _, rr := range backbone.RetireReasons {
		rs.Retired[rr.String()] = s.Retired[rr]
	}
	for _, sl := range s.Slots {
		rs.Pool = append(rs.Pool, PoolConn{State: sl.State.String(), RTTMillis: millis(sl.SmoothedRTT),
			MinRTTMillis: millis(sl.MinRTT), LossRatio: sl.LossRatio, OpenStreams: sl.OpenStreams, Draining: sl.Draining})
	}
	return rs
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BGPPeerState is one BGP neighbour.
type BGPPeerState struct {
	Address            netip.Addr `json:"address"`
	State              string     `json:"state"`
	UptimeSeconds      float64    `json:"uptime_seconds"`
	PrefixesAdvertised int        `json:"prefixes_advertised"`
	LastError          string     `json:"last_error,omitempty"`
	LastErrorAt        *time.Time `json:"last_error_at,omitempty"`
}

func bgpPeerStates(ps []bgp.PeerStatus) []BGPPeerState {
	out := make([]BGPPeerState, 0, len(ps))
	for _, p := range ps {
		st := BGPPeerState{Address: p.Address, State: p.State, UptimeSeconds: p.Uptime.Seconds(),
			PrefixesAdvertised: p.PrefixesAdvertised, LastError: p.LastError}
		if !p.LastErrorAt.IsZero() {
			at := p.LastErrorAt
			st.LastErrorAt = &at
		}
		out = append(out, st)
	}
	return out
}

// accelViews lists the accelerators the PoP called pop serves: every
// anycast one with an address in the PoP's zones, and the DNS-steered
// ones when it has steering addresses. Each prefix carries the zone of
// the addresses it covers; decide announces those of the zones the PoP
// serves.
func accelViews(doc *config.Document, pop string) []accelView {
	steers, _ := steeringAddrs(doc, pop)
	var p *config.PoP
	if n, err := doc.Node(pop); err == nil {
		p = n.PoP
	}
	serves := func(zone string) bool { return p == nil || p.ServesZone(zone) }
	var out []accelView
	for ai := range doc.Accelerators {
		a := &doc.Accelerators[ai]
		if a.Steering == "dns" && len(steers) == 0 {
			continue
		}
		v := accelView{name: a.Name, serves: serves}
		var addrs []netip.Addr
		for _, s := range a.IPAddresses {
			if ad, err := netip.ParseAddr(s); err == nil {
				addrs = append(addrs, ad)
			}
		}
		if a.Steering != "dns" && len(servedAddrs(a, addrs, serves)) == 0 {
			continue // every address is in zones this PoP does not serve
		}
		for _, s := range a.Prefixes {
			if pf, err := netip.ParsePrefix(s); err == nil {
				zone := ""
				for _, ad := range addrs {
					if pf.Contains(ad) {
						zone = a.ZoneOf(ad) // one zone per prefix: validated
					}
				}
				v.prefixes, v.zones = append(v.prefixes, pf), append(v.zones, zone)
			}
		}
		if len(v.prefixes) == 0 {
			for _, ad := range addrs {
				v.prefixes = append(v.prefixes, netip.PrefixFrom(ad, ad.BitLen()))
				v.zones = append(v.zones, a.ZoneOf(ad))
			}
		}
		out = append(out, v)
	}
	return out
}

// servedAddrs are the addresses of a that a PoP serving the zones serves
// says yes to: it listens on them and announces them.
func servedAddrs(a *config.Accelerator, addrs []netip.Addr, serves func(zone string) bool) []netip.Addr {
	var out []netip.Addr
	for _, ad := range addrs {
		if serves(a.ZoneOf(ad)) {
			out = append(out, ad)
		}
	}
	return out
}

func runEdge(ctx context.Context, opts Options, n config.Node, store *pki.Store) error {
	log := opts.Logger
	b, err := buildEdge(opts, n, store) // see build.go
	if err != nil {
		return err
	}
	en, reg := b.en, b.reg
	live := en.live.Load()
	defer func() {
		if err := en.releaseAddrs(); err != nil {
			log.Warn("anycast addresses", "err", err)
		}
	}()
	if _, err := en.bindAddrs(live.listeners); err != nil {
		return err
	}
	var stopFlowLogs func()
	en.flowLogs, stopFlowLogs, err = startFlowLogs(n, live.listeners, // see flowlogs.go
		func() map[string]gateway.Endpoint { return en.live.Load().endpoints }, log)
	if err != nil {
		return err
	}
	defer stopFlowLogs() // after every component below has returned
	if err := en.e.Listen(); err != nil {
		return err
	}
	defer en.e.Close() // releases the listeners when start-up fails below
	if err := en.fwd.Listen(); err != nil {
		return err
	}
	defer en.fwd.Close()
	reg.MustRegister(edgeCollector{en: en, fc: flow.NewCollector(func() []*flow.Meter {
		live := en.live.Load()
		out := make([]*flow.Meter, 0, len(live.listeners)+len(live.removed))
		for _, l := range slices.Concat(live.listeners, live.removed) {
			out = append(out, l.Meter)
		}
		return out
	})})
	reg.MustRegister(configCollector{en.cfg})
	if en.dns != nil {
		if err := en.dns.srv.Listen(); err != nil {
			return err
		}
		defer func() { _ = en.dns.srv.Close() }()
	}
	page := ownPage(n, en, log)
	adm, err := admin.Listen(admin.Options{Addr: n.PoP.Admin, Remote: n.PoP.RemoteAdmin, Store: store,
		Node: en, Registry: reg, Page: page.Handler(), Logger: log})
	if err != nil {
		return err
	}
	en.refresh(false, "")

	// Components run in stages that stop in anycast order (shutdown,
	// below); the first to fail, the end of ctx, or a completed drain
	// (errDrained) starts it.
	runCtx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	var (
		ctl   = newStage(ctx, stopRun) // supervisor, watchdog, flow log reopening
		data  = newStage(ctx, stopRun) // listeners: TCP, UDP, DNS
		bb    = newStage(ctx, stopRun) // backbone clients
		route = newStage(ctx, stopRun) // BGP speaker
		ops   = newStage(ctx, stopRun) // admin API, page, certificates
	)
	en.bb = bb
	ops.Go(adm.Serve)
	ops.Go(page.Run)
	ops.Go(store.Run)
	for _, c := range live.clients {
		en.startClient(c)
	}
	data.Go(en.e.Run)
	data.Go(en.fwd.Run)
	if en.dns != nil {
		data.Go(en.dns.srv.Run)
	}
	if en.speaker != nil {
		route.Go(en.speaker.Run)
	}
	ctl.Go(en.supervise)
	if opts.Notify.Watchdog() > 0 {
		sources := []func() time.Time{en.e.Liveness, en.fwd.Liveness}
		ctl.Go(func(ctx context.Context) error { return watchdog(ctx, opts.Notify, log, sources...) })
	}
	if opts.Reopen != nil && en.flowLogs != nil {
		ctl.Go(func(ctx context.Context) error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-opts.Reopen:
					en.flowLogs.Reopen()
				}
			}
		})
	}
	notify(log, opts.Notify.Ready)
	<-runCtx.Done()
	err = context.Cause(runCtx)
	notify(log, opts.Notify.Stopping)
	en.shutdown(errors.Is(err, errDrained), ctl, data, bb, route, ops)
	if errors.Is(err, errDrained) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// shutdown stops an edge's stages in anycast order: the supervisor first
// (nothing is announced again), then, unless a drain already did, the
// withdrawal and the end of readiness; the listeners and their flows (the
// ones still open are reset, reason shutdown); the backbone connections,
// closed with a reason; the BGP sessions last, so that the routers hear
// the withdrawal before the sessions go; the admin API after everything.
func (en *edgeNode) shutdown(drained bool, ctl, data, bb, route, ops *stage) {
	ctl.stop()
	if !drained {
		en.refresh(true, "stopping")
		if en.speaker != nil {
			en.speaker.SetAnnounce(nil)
		}
	}
	data.stop()
	bb.stop()
	route.stop()
	ops.stop()
}

// stage is a group of a node's goroutines that stop together. The first
// error other than a clean stop ends the node (fail).
type stage struct {
	ctx    context.Context
	cancel context.CancelFunc
	fail   context.CancelCauseFunc
	wg     sync.WaitGroup
}

// newStage returns a stage whose context keeps parent's values but ends
// only with stop.
func newStage(parent context.Context, fail context.CancelCauseFunc) *stage {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	return &stage{ctx: ctx, cancel: cancel, fail: fail}
}

// Go runs f in the stage.
func (s *stage) Go(f func(context.Context) error) {
	s.wg.Go(func() {
		if err := f(s.ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.fail(err)
		}
	})
}

// stop ends the stage's goroutines and waits for them.
func (s *stage) stop() {
	s.cancel()
	s.wg.Wait()
}

// supervise owns readiness and the drain state: it recomputes what to
// announce on every backbone change, and runs drains.
func (en *edgeNode) supervise(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	drainCfg := en.live.Load().n.PoP.Drain
	var draining bool
	var phase string
	var grace, exit <-chan time.Time
	// poll ticks while withdrawn: the drain ends as soon as no flow is
	// left. stopped is set once the listeners no longer accept.
	var poll *time.Ticker
	var pollC <-chan time.Time
	stopped := false
	defer func() {
		if poll != nil {
			poll.Stop()
		}
	}()
	readySent := false
	drainSignal := en.opts.Drain
	update := func() {
		ready := en.refresh(draining, phase)
		if ready && !readySent && en.opts.Ready != nil {
			readySent = true
			en.log.Info("edge serving", "listeners", len(en.e.Addrs())+len(en.fwd.Addrs()), "regions", len(en.clients))
			en.opts.Ready()
		}
	}
	startDrain := func() {
		if draining {
			return
		}
		draining, phase = true, "graceful-shutdown"
		drainCfg = en.live.Load().n.PoP.Drain
		en.log.Info("drain: announcing GRACEFUL_SHUTDOWN", "bgp_grace", drainCfg.BGPGrace, "timeout", drainCfg.Timeout)
		if en.speaker != nil {
			en.speaker.SetGracefulShutdown(true)
		}
		grace = time.After(drainCfg.BGPGrace)
		update()
	}
	update()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-en.changes:
			update()
		case u := <-en.opts.Updates:
			en.cfg.reload(u, en.apply) // see edgereload.go
			update()
		case cmd := <-en.cfg.cmds:
			en.cfg.override(cmd, en.apply) // see overrides.go
			update()
		case <-tick.C:
			update()
		case <-drainSignal:
			drainSignal = nil
			startDrain()
		case cmd := <-en.cmds:
			switch {
			case cmd.drain:
				startDrain()
				cmd.done <- nil
			case !draining:
				cmd.done <- errors.New("not draining")
			case stopped:
				cmd.done <- errors.New("the drain is ending: the listeners are closed")
			default:
				draining, phase, grace, exit = false, "", nil, nil
				if poll != nil {
					poll.Stop()
					poll, pollC = nil, nil
				}
				if en.speaker != nil {
					en.speaker.SetGracefulShutdown(false)
				}
				en.log.Info("undrain: serving again")
				update()
				cmd.done <- nil
			}
		case <-grace:
			grace, phase = nil, "withdrawn"
			if en.speaker != nil {
				en.speaker.SetAnnounce(nil)
			}
			en.log.Info("drain: withdrawn; serving what still arrives", "flows", en.activeFlows(),
				"until", time.Now().Add(drainCfg.Timeout).Format(time.RFC3339))
			exit = time.After(drainCfg.Timeout)
			poll = time.NewTicker(drainPoll)
			pollC = poll.C
			update()
		case <-pollC:
			if en.activeFlows() > 0 {
				continue
			}
			if !stopped {
				// Stop accepting, then look again: a flow accepted
				// meanwhile is served to its end (or to the timeout).
				stopped, phase = true, "stopping"
				en.e.StopAccepting()
				update()
				if en.activeFlows() > 0 {
					continue
				}
			}
			en.log.Info("drain: complete, no flow left")
			return errDrained
		case <-exit:
			en.e.StopAccepting()
			en.log.Info("drain: timeout, exiting", "flows_cut", en.activeFlows())
			return errDrained
		}
	}
}

// drainPoll is how often a withdrawn edge looks whether any flow is left.
const drainPoll = 50 * time.Millisecond

// activeFlows is the number of flows open on every listener, TCP and UDP.
func (en *edgeNode) activeFlows() int64 {
	var n int64
	for _, l := range en.live.Load().listeners {
		n += l.Meter.Active()
	}
	return n
}

// refresh recomputes readiness, pushes the announcements (unless
// draining) and publishes a new status snapshot. It reports whether every
// accelerator is ready.
func (en *edgeNode) refresh(draining bool, phase string) bool {
	live := en.live.Load()
	st := &EdgeStatus{Node: en.name, Role: string(config.RolePoP), Version: en.opts.Version, Draining: draining, DrainPhase: phase,
		live: live}
	for _, c := range live.clients {
		st.Regions = append(st.Regions, regionState(c.Region(), c.Stats()))
	}
	// Listen succeeded before the first refresh, and a reload binds
	// before it commits: every listener is bound.
	r := decide(live.accels, live.listeners, true, live.regions)
	st.Accelerators = r.accelerators
	for i, l := range live.listeners {
		st.Listeners = append(st.Listeners, listenerStatus(l, r.listeners[i]))
	}
	st.Ready = r.all && !draining
	en.tellFleet(r, draining)
	if en.speaker != nil {
		if !draining {
			en.speaker.SetAnnounce(r.announce)
		}
		st.BGP = bgpPeerStates(en.speaker.Peers())
		st.Announced = en.speaker.Announced()
	}
	en.status.Store(st)
	return r.all
}

// listenerStatus is l's status without its counters.
func listenerStatus(l edge.Listener, r listenerReadiness) ListenerStatus {
	ls := ListenerStatus{Key: l.Route.Key, Accelerator: l.Accelerator, Protocol: l.Protocol, Ready: r.ready, FailOpen: r.failOpen}
	for _, p := range l.Ports {
		ls.Ports = append(ls.Ports, PortRange{From: p.From, To: p.To})
	}
	return ls
}

// Status implements admin.Node: the last snapshot with live counters.
func (en *edgeNode) Status() any {
	st := *en.status.Load()
	st.Listeners = slices.Clone(st.Listeners)
	var sum flow.Counters
	for i, l := range st.live.listeners {
		c := l.Meter.Snapshot()
		sum.Add(c)
		st.Listeners[i].FlowCounters = flowCounters(c, l.Protocol == "udp")
	}
	for _, l := range st.live.removed {
		c := l.Meter.Snapshot()
		sum.Add(c)
		st.RemovedListeners = append(st.RemovedListeners, listenerStatus(l, listenerReadiness{}))
		st.RemovedListeners[len(st.RemovedListeners)-1].FlowCounters = flowCounters(c, l.Protocol == "udp")
	}
	st.Flows = flowCounters(sum, false)
	if en.dns != nil {
		st.DNS = en.dns.status()
	}
	st.FlowLogs = flowLogStatus(en.flowLogs)
	st.CustomRouting = en.customStatus(st.live)
	st.Config = en.cfg.status()
	return &st
}

// tellFleet sends this edge's state to the regions when it changed (the
// accelerators it is ready for, and draining), and refreshes the DNS
// server's view of which PoPs are available.
func (en *edgeNode) tellFleet(r readiness, draining bool) {
	st := wire.EdgeState{Epoch: en.epoch, Draining: draining, Ready: []string{}}
	for _, a := range r.accelerators {
		if a.Ready {
			st.Ready = append(st.Ready, a.Name)
		}
	}
	if en.said == nil || en.said.Draining != st.Draining || !slices.Equal(en.said.Ready, st.Ready) {
		en.seq++
		st.Seq = en.seq
		en.said = &st
		for _, c := range en.live.Load().clients {
			c.SetEdgeState(st)
		}
	}
	if en.dns != nil {
		fleet, view := en.live.Load().regions.Fleet()
		en.dns.update(en.name, *en.said, fleet, view)
	}
}

// Ready implements admin.Node.
func (en *edgeNode) Ready() bool {
	st := en.status.Load()
	return st != nil && st.Ready
}

// Drain implements admin.Drainer.
func (en *edgeNode) Drain() error { return en.command(true) }

// Undrain implements admin.Drainer.
func (en *edgeNode) Undrain() error { return en.command(false) }

func (en *edgeNode) command(drain bool) error {
	cmd := command{drain: drain, done: make(chan error, 1)}
	select {
	case en.cmds <- cmd:
		return <-cmd.done
	case <-time.After(5 * time.Second):
		return errors.New("edge supervisor busy or stopped")
	}
}

// Override implements admin.Overrider: the supervisor applies it.
func (en *edgeNode) Override(req admin.OverrideRequest) (any, error) { return en.cfg.Override(req) }

var (
	_ admin.Drainer   = (*edgeNode)(nil)
	_ admin.Overrider = (*edgeNode)(nil)
)
