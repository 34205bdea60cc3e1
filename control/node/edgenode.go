package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/anycast"
	"github.com/anyedge/anyedge/edge/bgp"
)

// errDrained ends an edge's errgroup once a drain has run its course.
var errDrained = errors.New("drain complete")

// accelView is what readiness needs to know about one accelerator.
type accelView struct {
	name     string
	prefixes []netip.Prefix
	// groups lists, per region, the endpoint IDs that serve it.
	groups map[string][]string
}

// edgeNode runs an edge: listeners, backbone clients, BGP speaker, and the
// supervisor goroutine that owns readiness and the drain state.
type edgeNode struct {
	opts    Options
	n       config.Node
	log     *slog.Logger
	e       *edge.Edge
	clients []*backbone.Client
	speaker *bgp.Speaker // nil without BGP neighbours
	accels  []accelView
	cmds    chan command
	status  atomic.Pointer[EdgeStatus]
}

type command struct {
	drain bool // false: undrain
	done  chan error
}

// EdgeStatus is the edge's status snapshot, served at /status.
type EdgeStatus struct {
	Node         string             `json:"node"`
	Role         string             `json:"role"`
	Version      string             `json:"version"`
	Ready        bool               `json:"ready"`
	Draining     bool               `json:"draining"`
	DrainPhase   string             `json:"drain_phase,omitempty"`
	Accelerators []AcceleratorState `json:"accelerators"`
	Regions      []RegionState      `json:"regions"`
	Flows        FlowCounters       `json:"flows"`
	BGP          []bgp.PeerStatus   `json:"bgp_peers,omitempty"`
	Announced    []netip.Prefix     `json:"announced,omitempty"`
}

// AcceleratorState says whether the edge can serve an accelerator.
type AcceleratorState struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
	// FailOpen is set when no endpoint of the accelerator is healthy in any
	// reachable region: flows are then spread over all of them.
	FailOpen bool `json:"fail_open"`
}

// RegionState is the edge's view of one region.
type RegionState struct {
	Name        string  `json:"name"`
	Reachable   bool    `json:"reachable"`
	Connections int     `json:"connections"`
	RTTMillis   float64 `json:"rtt_ms"`
	LossRatio   float64 `json:"loss_ratio"`
	OpenStreams int64   `json:"open_streams"`
}

// FlowCounters are the edge's totals.
type FlowCounters struct {
	Accepted int64 `json:"accepted"`
	Retries  int64 `json:"retries"`
	Hedges   int64 `json:"hedges"`
	Failed   int64 `json:"failed"`
	Aborted  int64 `json:"aborted"`
	Early    int64 `json:"early_data"`
}

func accelViews(doc *config.Document) []accelView {
	var out []accelView
	for _, a := range doc.Accelerators {
		v := accelView{name: a.Name, groups: map[string][]string{}}
		for _, p := range a.Prefixes {
			if pf, err := netip.ParsePrefix(p); err == nil {
				v.prefixes = append(v.prefixes, pf)
			}
		}
		if len(v.prefixes) == 0 {
			for _, s := range a.IPAddresses {
				if ad, err := netip.ParseAddr(s); err == nil {
					v.prefixes = append(v.prefixes, netip.PrefixFrom(ad, ad.BitLen()))
				}
			}
		}
		for _, l := range a.Listeners {
			for _, g := range l.EndpointGroups {
				for _, e := range g.Endpoints {
					v.groups[g.Region] = append(v.groups[g.Region], e.ID)
				}
			}
		}
		out = append(out, v)
	}
	return out
}

func bgpConfig(b config.BGP) (bgp.Config, error) {
	c := bgp.Config{
		LocalASN: b.LocalASN, ListenPort: b.ListenPort, MED: b.MED,
		ASPathPrepend: b.ASPathPrepend, HoldDown: b.HoldDown,
	}
	var err error
	if c.RouterID, err = netip.ParseAddr(b.RouterID); err != nil {
		return c, fmt.Errorf("bgp.router_id: %w", err)
	}
	if b.NextHopIPv4 != "" {
		c.NextHop4, _ = netip.ParseAddr(b.NextHopIPv4)
	}
	if b.NextHopIPv6 != "" {
		c.NextHop6, _ = netip.ParseAddr(b.NextHopIPv6)
	}
	for _, s := range b.Communities {
		parts := strings.Split(s, ":")
		hi, _ := strconv.ParseUint(parts[0], 10, 16)
		lo, _ := strconv.ParseUint(parts[1], 10, 16)
		c.Communities = append(c.Communities, uint32(hi)<<16|uint32(lo))
	}
	for _, s := range b.LargeCommunities {
		var lc [3]uint32
		for i, p := range strings.Split(s, ":") {
			v, _ := strconv.ParseUint(p, 10, 32)
			lc[i] = uint32(v)
		}
		c.LargeCommunities = append(c.LargeCommunities, lc)
	}
	for _, n := range b.Neighbors {
		nb := bgp.Neighbor{PeerASN: n.PeerASN, HoldTime: n.HoldTime, Keepalive: n.Keepalive,
			Password: n.Password, Multihop: uint8(n.Multihop), Passive: n.Passive}
		if nb.Address, err = netip.ParseAddr(n.Address); err != nil {
			return c, fmt.Errorf("bgp neighbour %q: %w", n.Address, err)
		}
		if n.LocalAddress != "" {
			nb.LocalAddress, _ = netip.ParseAddr(n.LocalAddress)
		}
		c.Neighbors = append(c.Neighbors, nb)
	}
	return c, nil
}

func runEdge(ctx context.Context, opts Options, n config.Node, store *pki.Store) error {
	log := opts.Logger
	listeners, err := edgeListeners(opts.Doc)
	if err != nil {
		return err
	}
	en := &edgeNode{opts: opts, n: n, log: log, accels: accelViews(opts.Doc), cmds: make(chan command)}
	regions := edge.Regions{}
	for _, r := range usedRegions(opts.Doc) {
		c, err := backbone.NewClient(backbone.ClientConfig{
			Region:          r.Name,
			Addr:            r.Backbone.Address,
			Connections:     n.PoP.Backbone.Connections,
			KeepAlivePeriod: n.PoP.Backbone.KeepAlivePeriod,
			IdleTimeout:     n.PoP.Backbone.IdleTimeout,
			TLSConfigs:      pki.ClientConfigs(store, r.Name),
			Hello:           backbone.Hello(n.Name, opts.Version),
			Logger:          log,
		})
		if err != nil {
			return err
		}
		regions[r.Name] = c
		en.clients = append(en.clients, c)
	}
	if len(n.PoP.BGP.Neighbors) > 0 {
		bc, err := bgpConfig(n.PoP.BGP)
		if err != nil {
			return err
		}
		if en.speaker, err = bgp.New(bc, log); err != nil {
			return err
		}
	}
	if n.PoP.BGP.ManageAddresses {
		var addrs []netip.Addr
		for _, l := range listeners {
			for _, a := range l.Addrs {
				if !slices.Contains(addrs, a) {
					addrs = append(addrs, a)
				}
			}
		}
		release, err := anycast.Bind("lo", addrs)
		if err != nil {
			return err
		}
		defer func() {
			if err := release(); err != nil {
				log.Warn("anycast addresses", "err", err)
			}
		}()
	}
	en.e, err = edge.New(edge.Config{Node: n.Name, Listeners: listeners, Logger: log}, regions)
	if err != nil {
		return err
	}
	if err := en.e.Listen(); err != nil {
		return err
	}
	fwd, err := udpForwarder(listeners, n.PoP, regions, log) // see udp.go
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	en.registerMetrics(reg)
	adm, err := admin.Listen(admin.Options{Addr: n.PoP.Admin, Remote: n.PoP.RemoteAdmin, Store: store,
		Node: en, Registry: reg, Logger: log})
	if err != nil {
		return err
	}
	en.refresh(false, "")

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return adm.Serve(gctx) })
	g.Go(func() error { return store.Run(gctx) })
	for _, c := range en.clients {
		g.Go(func() error { return c.Run(gctx) })
	}
	g.Go(func() error { return en.e.Run(gctx) })
	if fwd != nil {
		g.Go(func() error { return fwd.Run(gctx) })
	}
	if en.speaker != nil {
		g.Go(func() error { return en.speaker.Run(gctx) })
	}
	g.Go(func() error { return en.supervise(gctx) })
	err = g.Wait()
	if errors.Is(err, errDrained) {
		return nil
	}
	return err
}

// supervise owns readiness and the drain state: it recomputes what to
// announce on every backbone change, and runs drains.
func (en *edgeNode) supervise(ctx context.Context) error {
	changes := make(chan struct{}, 1)
	for _, c := range en.clients {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-c.Changes():
					select {
					case changes <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	drainCfg := en.n.PoP.Drain
	var draining bool
	var phase string
	var grace, exit <-chan time.Time
	readySent := false
	drainSignal := en.opts.Drain
	update := func() {
		ready := en.refresh(draining, phase)
		if ready && !readySent && en.opts.Ready != nil {
			readySent = true
			en.log.Info("edge serving", "listeners", len(en.e.Addrs()), "regions", len(en.clients))
			en.opts.Ready()
		}
	}
	startDrain := func() {
		if draining {
			return
		}
		draining, phase = true, "graceful-shutdown"
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
		case <-changes:
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
			default:
				draining, phase, grace, exit = false, "", nil, nil
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
			en.log.Info("drain: withdrawn; serving what still arrives", "until", time.Now().Add(drainCfg.Timeout).Format(time.RFC3339))
			exit = time.After(drainCfg.Timeout)
			update()
		case <-exit:
			en.log.Info("drain: complete, exiting")
			return errDrained
		}
	}
}

// refresh recomputes readiness, pushes the announcements (unless
// draining) and publishes a new status snapshot. It reports whether every
// accelerator is ready.
func (en *edgeNode) refresh(draining bool, phase string) bool {
	byName := map[string]*backbone.Client{}
	st := &EdgeStatus{Node: en.n.Name, Role: string(en.n.Role), Version: en.opts.Version, Draining: draining, DrainPhase: phase}
	for _, c := range en.clients {
		byName[c.Region()] = c
		s := c.Stats()
		st.Regions = append(st.Regions, RegionState{
			Name: c.Region(), Reachable: s.Live > 0, Connections: s.Live,
			RTTMillis: float64(s.SmoothedRTT.Microseconds()) / 1000, LossRatio: s.LossRatio, OpenStreams: s.OpenStreams,
		})
	}
	var announce []netip.Prefix
	all := true
	for _, a := range en.accels {
		reachable, healthy := false, false
		for region, ids := range a.groups {
			c := byName[region]
			if c == nil || !c.Reachable() {
				continue
			}
			reachable = true
			for _, id := range ids {
				if h, known := c.EndpointHealthy(id); h || !known {
					healthy = true
				}
			}
		}
		ready := reachable && healthy
		st.Accelerators = append(st.Accelerators, AcceleratorState{Name: a.name, Ready: ready, FailOpen: reachable && !healthy})
		if ready {
			announce = append(announce, a.prefixes...)
		} else {
			all = false
		}
	}
	st.Ready = all && !draining
	if en.speaker != nil {
		if !draining {
			en.speaker.SetAnnounce(announce)
		}
		st.BGP = en.speaker.Peers()
		st.Announced = en.speaker.Announced()
	}
	en.status.Store(st)
	return all
}

// Status implements admin.Node: the last snapshot with live counters.
func (en *edgeNode) Status() any {
	st := *en.status.Load()
	cs := en.e.Stats()
	st.Flows = FlowCounters{Accepted: cs.Accepted.Load(), Retries: cs.Retries.Load(), Hedges: cs.Hedges.Load(), Failed: cs.Failed.Load(), Aborted: cs.Aborted.Load(), Early: cs.Early.Load()}
	return &st
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

var _ admin.Drainer = (*edgeNode)(nil)

func (en *edgeNode) registerMetrics(reg *prometheus.Registry) {
	cs := en.e.Stats()
	counter := func(name, help string, v *atomic.Int64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "anyedge", Subsystem: "edge", Name: name, Help: help,
		}, func() float64 { return float64(v.Load()) }))
	}
	counter("flows_accepted_total", "Client TCP connections accepted.", &cs.Accepted)
	counter("flow_retries_total", "Extra attempts after a failed or slow region answer.", &cs.Retries)
	counter("flow_hedges_total", "Hedged attempts started because an answer was slow.", &cs.Hedges)
	counter("flows_failed_total", "Client connections reset because no endpoint could be reached.", &cs.Failed)
	counter("flows_aborted_total", "Client connections that failed while their flow was set up.", &cs.Aborted)
	counter("flows_early_data_total", "Flows that sent client bytes with their setup, before the region's answer.", &cs.Early)
	for _, c := range en.clients {
		labels := prometheus.Labels{"region": c.Region()}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "anyedge", Subsystem: "backbone", Name: "live_connections", Help: "Live QUIC connections to the region.", ConstLabels: labels,
		}, func() float64 { return float64(c.Stats().Live) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "anyedge", Subsystem: "backbone", Name: "rtt_seconds", Help: "Smoothed RTT of the best live connection to the region.", ConstLabels: labels,
		}, func() float64 { return c.Stats().SmoothedRTT.Seconds() }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "anyedge", Subsystem: "backbone", Name: "loss_ratio", Help: "Packets lost over packets sent on live connections to the region.", ConstLabels: labels,
		}, func() float64 { return c.Stats().LossRatio }))
	}
	if en.speaker != nil {
		reg.MustRegister(bgpCollector{en.speaker})
	}
}

// bgpCollector exports the BGP sessions' state.
type bgpCollector struct{ s *bgp.Speaker }

var (
	bgpUpDesc       = prometheus.NewDesc("anyedge_bgp_session_established", "1 when the BGP session is established.", []string{"peer"}, nil)
	bgpPrefixesDesc = prometheus.NewDesc("anyedge_bgp_prefixes_advertised", "Prefixes advertised to the peer.", []string{"peer"}, nil)
)

func (b bgpCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bgpUpDesc
	ch <- bgpPrefixesDesc
}

func (b bgpCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range b.s.Peers() {
		up := 0.0
		if p.State == "established" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(bgpUpDesc, prometheus.GaugeValue, up, p.Address.String())
		ch <- prometheus.MustNewConstMetric(bgpPrefixesDesc, prometheus.GaugeValue, float64(p.PrefixesAdvertised), p.Address.String())
	}
}
