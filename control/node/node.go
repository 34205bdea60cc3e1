// Package node runs one anyedge node, an edge (PoP) or a region gateway,
// from the fleet document: it maps the document onto each component's own
// small configuration, builds the components and runs them under one
// errgroup until the context ends.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/dashboard"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/healthcheck"
	"github.com/anyedge/anyedge/internal/sdnotify"
)

// Options says which node to run from which document.
type Options struct {
	// Doc is the loaded, validated fleet document.
	Doc *config.Document
	// Revision is Doc's revision (config.Loaded), shown in /status and
	// metrics; a reload of the same revision changes nothing.
	Revision config.Revision
	// Source says where the document comes from, for /status (e.g.
	// "file /etc/anyedge/anyedge.yaml").
	Source string
	// Updates, when set, brings new readings of the document: each is
	// reloaded (see reload.go). A nil channel means no reloads.
	Updates <-chan config.Update
	// SourceStatus, when set, says how the source reaches where the
	// document lives (an etcd cluster): /status config.source_state and
	// the anyedge_config_source_* metrics.
	SourceStatus func() *config.SourceStatus
	// Node is the name of the PoP or region to run.
	Node string
	// Version is the build version, announced to peers.
	Version string
	// Logger receives every component's logs.
	Logger *slog.Logger
	// Store, when set, supplies the node's certificates (anyedge dev uses
	// a throwaway in-memory PKI); otherwise they are read from
	// topology.pki_dir.
	Store *pki.Store
	// Ready, when set, is called once the node serves: listeners bound and
	// every accelerator reachable with a healthy endpoint (edge), or
	// backbone bound (region).
	Ready func()
	// Drain, when it fires, starts an edge's drain: GRACEFUL_SHUTDOWN,
	// withdrawal after drain.bgp_grace, exit after drain.timeout (SIGTERM).
	Drain <-chan struct{}
	// Notify, when set, tells the service manager (systemd) that the node
	// has started and is stopping and, when it asks for a watchdog, that
	// the edge's data path is alive (see watchdog.go).
	Notify *sdnotify.Notifier
	// Reopen, when it fires, makes an edge's flow log close and reopen
	// its file, after an outside tool renamed it (SIGHUP).
	Reopen <-chan struct{}
}

// Run runs the node named by opts.Node until ctx ends. It returns nil on a
// clean stop.
func Run(ctx context.Context, opts Options) error {
	n, err := opts.Doc.Node(opts.Node)
	if err != nil {
		return err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Logger = opts.Logger.With("node", n.Name)
	store := opts.Store
	if store == nil {
		store, err = pki.OpenStore(opts.Doc.Topology.PKIDir, n.Name, opts.Logger)
		if err != nil {
			return fmt.Errorf("node %s: certificates: %w", n.Name, err)
		}
	}
	switch n.Role {
	case config.RolePoP:
		return runEdge(ctx, opts, n, store)
	case config.RoleRegion:
		return runRegion(ctx, opts, n, store)
	}
	return fmt.Errorf("node %s: unknown role %q", n.Name, n.Role)
}

func runRegion(ctx context.Context, opts Options, n config.Node, store *pki.Store) error {
	log := opts.Logger
	b, err := buildRegion(opts, n) // see build.go
	if err != nil {
		return err
	}
	rn := b.rn
	srv, err := backbone.Listen(backbone.ServerConfig{
		Listen: n.Region.Backbone.Listen,
		NoFEC:  n.Region.Backbone.FEC == config.FECOff,
		TLS:    pki.ServerConfig(store, func(name string) bool { return rn.live.Load().pops[name] }, b.metrics.OnReject(log)),
		Logger: log,
	}, rn.gw)
	if err != nil {
		return fmt.Errorf("region %s: %w", n.Name, err)
	}
	reg := newRegistry(opts.Version)
	reg.MustRegister(regionCollector{region: n.Name, m: b.metrics, gw: rn.gw, checker: rn.checker})
	reg.MustRegister(configCollector{rn.cfg})
	page := ownPage(n, rn, log)
	adm, err := admin.Listen(admin.Options{Addr: n.Region.Admin, Remote: n.Region.RemoteAdmin, Store: store,
		Node: rn, Registry: reg, Page: page.Handler(), Logger: log})
	if err != nil {
		_ = srv.Close()
		return err
	}
	log.Info("region serving", "backbone", srv.Addr().String(), "endpoints", len(rn.live.Load().endpoints))
	if opts.Ready != nil {
		opts.Ready()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return adm.Serve(gctx) })
	g.Go(func() error { return page.Run(gctx) })
	g.Go(func() error { return store.Run(gctx) })
	g.Go(func() error { return rn.checker.Run(gctx) })
	g.Go(func() error { return rn.dests.Run(gctx) })
	g.Go(func() error { return srv.Serve(gctx) })
	g.Go(func() error { publishHealth(gctx, rn.checker, rn.gw); return nil })
	g.Go(func() error { publishProbes(gctx, rn.dests, rn.gw); return nil })
	g.Go(func() error { rn.control(gctx); return nil })
	notify(log, opts.Notify.Ready)
	err = g.Wait()
	notify(log, opts.Notify.Stopping)
	_ = rn.gw.Close() // UDP flows (backbone/gateway/udp.go)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// control is the region's control goroutine: it owns the reloads.
func (r *regionNode) control(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-r.updates:
			r.cfg.reload(u, r.apply)
		case cmd := <-r.cfg.cmds:
			r.cfg.override(cmd, r.apply) // see overrides.go
		}
	}
}

// Override implements admin.Overrider: the control goroutine applies it.
func (r *regionNode) Override(req admin.OverrideRequest) (any, error) { return r.cfg.Override(req) }

// apply is the region's compile, prepare and commit of a reload (see
// reload.go). The health checkers take the new targets first (each builds
// every prober before changing anything, and keeps the state and history
// of the targets that stay): the custom routing destinations allowed one
// by one under the new configuration and the run-time overrides that
// SetCustom keeps, then the endpoints (should they fail, the destinations
// go back to the document in force). The gateway's endpoint table and
// custom routing swap after them, cutting the flows of removed endpoints.
func (r *regionNode) apply(doc *config.Document, n config.Node) (string, error) {
	live, eps, targets, err := compileRegion(r.cfg.effective(doc), n)
	if err != nil {
		return "", err
	}
	r.probeMu.Lock()
	defer r.probeMu.Unlock()
	probes, err := live.custom.probeTargets(n.Name, live.custom.rules.WithOverrides(r.gw.CustomRules().Overrides()))
	if err != nil {
		return "", fmt.Errorf("region %s: %w", n.Name, err)
	}
	if err := r.dests.Update(probes); err != nil {
		return "", err
	}
	if err := r.checker.Update(targets); err != nil {
		if old, oerr := r.live.Load().custom.probeTargets(n.Name, r.gw.CustomRules()); oerr == nil {
			_ = r.dests.Update(old) // accepted before, so accepted again
		}
		return "", err
	}
	cut := r.gw.SetEndpoints(eps)
	r.gw.SetCustom(live.custom.regionCustom(n.Name))
	r.live.Store(live)
	return fmt.Sprintf("%d endpoints, %d flows cut (endpoint_removed)", len(eps), cut), nil
}

// ownPage is the dashboard of node n alone, served on its admin API.
func ownPage(n config.Node, an admin.Node, log *slog.Logger) *dashboard.Dashboard {
	return dashboard.New([]dashboard.Target{{Name: n.Name, Role: string(n.Role), Source: dashboard.Local(an.Status)}},
		dashboard.Options{Title: n.String(), Logger: log})
}

// publishHealth feeds the checker's changes to the gateway, which pushes
// them to every connected edge.
func publishHealth(ctx context.Context, c *healthcheck.Checker, gw *gateway.Gateway) {
	follow(ctx, c, func(changes []healthcheck.Status) {
		var hs []wire.EndpointHealth
		for _, st := range changes {
			hs = append(hs, wire.EndpointHealth{ID: st.ID, Healthy: st.State.Routable(), Reason: st.LastErr})
		}
		gw.SetHealth(hs)
	})
}

// publishProbes feeds the custom routing destinations' probes to the
// gateway: an unhealthy destination is refused at once (and its edges
// learn it) until it turns healthy; one not probed yet, or no longer,
// loses its probe's mark.
func publishProbes(ctx context.Context, c *healthcheck.Checker, gw *gateway.Gateway) {
	follow(ctx, c, func(changes []healthcheck.Status) {
		for _, st := range changes {
			subnet, dest, ok := parseProbeID(st.ID)
			if !ok {
				continue
			}
			switch {
			case st.Removed, st.State == healthcheck.Unknown:
				gw.ClearProbed(subnet, dest)
			default:
				gw.SetProbed(subnet, dest, st.State == healthcheck.Healthy, st.LastErr)
			}
		}
	})
}

// follow hands every batch of c's changes to apply until ctx is done.
func follow(ctx context.Context, c *healthcheck.Checker, apply func([]healthcheck.Status)) {
	sub := c.Subscribe()
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.Ready():
		}
		if changes := sub.Changes(); len(changes) > 0 {
			apply(changes)
		}
	}
}

// ejector adapts the checker to the gateway's passive ejection.
type ejector struct{ c *healthcheck.Checker }

func (e ejector) Eject(id, reason string) { e.c.Eject(id, reason) }

// regionNode runs a region: gateway, health checks, and the control
// goroutine that owns reloads.
type regionNode struct {
	name, version string
	checker       *healthcheck.Checker
	// dests probes the custom routing destinations allowed one by one
	// (probeTargets); probeMu orders its updates with the changes of the
	// rules they follow (run-time allow and deny, reload).
	dests   *healthcheck.Checker
	probeMu sync.Mutex
	gw      *gateway.Gateway
	cfg     *reloader
	updates <-chan config.Update
	// live is the document in force, compiled; control replaces it.
	live atomic.Pointer[regionLive]
}

// regionLive is what a region runs of the document: immutable, replaced
// whole by a reload.
type regionLive struct {
	endpoints map[string]endpointInfo // by endpoint ID
	custom    *customPlan
	// pops are the PoPs whose certificates the backbone accepts.
	pops map[string]bool
}

// endpointInfo is what the document says of one of a region's endpoints.
type endpointInfo struct {
	listener string // edge.ListenerKey of its listener
	weight   int
}

// endpointInfos maps the IDs of the endpoints in region to their listener
// and weight.
func endpointInfos(doc *config.Document, region string) map[string]endpointInfo {
	out := map[string]endpointInfo{}
	for _, a := range doc.Accelerators {
		for _, l := range a.Listeners {
			for _, g := range l.EndpointGroups {
				if g.Region != region {
					continue
				}
				for _, e := range g.Endpoints {
					info := endpointInfo{listener: edge.ListenerKey(a.Name, l.Protocol, uint16(l.PortRanges[0].From)), weight: 128}
					if e.Weight != nil {
						info.weight = *e.Weight
					}
					out[e.ID] = info
				}
			}
		}
	}
	return out
}

// RegionStatus is a region's status snapshot, served at /status. The
// shape is documented in docs/status.md.
type RegionStatus struct {
	Node    string `json:"node"`
	Role    string `json:"role"`
	Version string `json:"version"`
	// ActiveFlows counts TCP and UDP flows.
	ActiveFlows int64           `json:"active_flows"`
	Endpoints   []EndpointState `json:"endpoints"`
	UDP         RegionUDP       `json:"udp"`
	// CustomRouting is set when the region serves custom routing subnets.
	CustomRouting *RegionCustomStatus `json:"custom_routing,omitempty"`
	// Edges are the connected edges' own states (control protocol 2),
	// which the region relays to every edge for DNS steering.
	Edges []wire.EdgeState `json:"edges"`
	// Config is the document in force and the reloads.
	Config ConfigStatus `json:"config"`
}

// EndpointState is one endpoint's health and traffic as its region sees
// it.
type EndpointState struct {
	ID string `json:"id"`
	// Listener is the key (accelerator/protocol/first port) of the
	// listener the endpoint serves.
	Listener      string    `json:"listener"`
	Weight        int       `json:"weight"`
	State         string    `json:"state"`
	Reason        string    `json:"reason,omitempty"`
	LatencyMillis float64   `json:"latency_ms"`
	LastProbe     time.Time `json:"last_probe"`
	Changed       time.Time `json:"changed"`
	Ejected       bool      `json:"ejected,omitempty"`
	Ejections     int64     `json:"ejections"`
	// ActiveTCPFlows and ActiveUDPFlows are the flows open now; DialsTCP
	// and DialsUDP count dials (UDP: endpoint sockets opened);
	// DialFailures counts failed dials by answer code.
	ActiveTCPFlows int64             `json:"active_tcp_flows"`
	ActiveUDPFlows int64             `json:"active_udp_flows"`
	DialsTCP       uint64            `json:"dials_tcp"`
	DialsUDP       uint64            `json:"dials_udp"`
	DialFailures   map[string]uint64 `json:"dial_failures"`
	// Changes are the endpoint's last state changes, oldest first
	// (healthcheck.HistoryLen at most).
	Changes []StateChange `json:"changes"`
}

// RegionUDP are a region's UDP counters.
type RegionUDP struct {
	DatagramsReceived   int64 `json:"datagrams_received"`
	PacketsToEndpoint   int64 `json:"packets_to_endpoint"`
	PacketsFromEndpoint int64 `json:"packets_from_endpoint"`
	FallbackToEdge      int64 `json:"fallback_to_edge"`
	UnknownFlow         int64 `json:"unknown_flow"`
	// Dropped counts packets dropped by place: "backbone" (backlog full,
	// no route back to an edge, a failed send) and "region_socket" (an
	// endpoint socket error).
	Dropped map[string]int64 `json:"dropped"`
}

// StateChange is one state change of an endpoint.
type StateChange struct {
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason,omitempty"`
}

// Status implements admin.Node.
func (r *regionNode) Status() any {
	live := r.live.Load()
	st := &RegionStatus{Node: r.name, Role: string(config.RoleRegion), Version: r.version, ActiveFlows: r.gw.ActiveFlows(),
		Edges: append([]wire.EdgeState{}, r.gw.Edges()...), Config: r.cfg.status()}
	traffic := map[string]gateway.EndpointStats{}
	for _, e := range r.gw.EndpointStats() {
		traffic[e.ID] = e
	}
	for _, e := range r.checker.Snapshot() {
		info := live.endpoints[e.ID]
		es := EndpointState{ID: e.ID, Listener: info.listener, Weight: info.weight, State: e.State.String(), Reason: e.LastErr,
			LatencyMillis: float64(e.Latency.Microseconds()) / 1000, LastProbe: e.LastProbe, Changed: e.Changed,
			Ejected: e.Ejected, Ejections: e.Ejections, DialFailures: map[string]uint64{}, Changes: []StateChange{}}
		for _, c := range r.checker.History(e.ID) {
			es.Changes = append(es.Changes, StateChange{At: c.At, From: c.From.String(), To: c.To.String(), Reason: c.Reason})
		}
		if t, ok := traffic[e.ID]; ok {
			es.ActiveTCPFlows, es.ActiveUDPFlows, es.DialsTCP, es.DialsUDP = t.ActiveTCP, t.ActiveUDP, t.DialsTCP, t.DialsUDP
			for code, n := range t.Failures {
				es.DialFailures[code.Label()] = n
			}
		}
		st.Endpoints = append(st.Endpoints, es)
	}
	u := r.gw.UDPStats()
	st.UDP = RegionUDP{DatagramsReceived: u.Datagrams, PacketsToEndpoint: u.ToEndpoint, PacketsFromEndpoint: u.FromEndpoint,
		FallbackToEdge: u.FallbackToEdge, UnknownFlow: u.UnknownFlow,
		Dropped: map[string]int64{"backbone": u.Dropped - u.DroppedSocket, "region_socket": u.DroppedSocket}}
	st.CustomRouting = r.customStatus()
	return st
}

// Ready implements admin.Node: a region is ready once it serves.
func (r *regionNode) Ready() bool { return true }
