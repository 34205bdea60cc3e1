package node

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/acl"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/bgp"
	dnsedge "github.com/anyedge/anyedge/edge/dns"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/router"
	"github.com/anyedge/anyedge/edge/tlsterm"
	"github.com/anyedge/anyedge/healthcheck"
	"github.com/anyedge/anyedge/healthcheck/probe"
)

// edgeListeners maps the document's listeners onto the edge's own types,
// for the PoP called pop: anycast accelerators listen on their static
// addresses, DNS-steered ones on the PoP's own steering addresses (and not
// at all on a PoP without any).
func edgeListeners(doc *config.Document, pop string, logger *slog.Logger) ([]edge.Listener, error) {
	steerAddrs, err := steeringAddrs(doc, pop)
	if err != nil {
		return nil, err
	}
	plan, err := planCustom(doc)
	if err != nil {
		return nil, err
	}
	var p *config.PoP
	if n, err := doc.Node(pop); err == nil {
		p = n.PoP
	}
	serves := func(zone string) bool { return p == nil || p.ServesZone(zone) }
	var out []edge.Listener
	for ai := range doc.Accelerators {
		acc := &doc.Accelerators[ai]
		addrs, err := parseAddrs(fmt.Sprintf("accelerators[%d].ip_addresses", ai), acc.IPAddresses)
		if err != nil {
			return nil, err
		}
		if acc.Steering != "dns" {
			// Network zones: this PoP listens only on its zones' addresses.
			if addrs = servedAddrs(acc, addrs, serves); len(addrs) == 0 {
				continue
			}
		}
		if acc.Kind == config.KindCustomRouting {
			for _, cl := range plan.listeners {
				if cl.ai == ai {
					out = append(out, cl.edgeListeners(addrs)...)
				}
			}
			continue
		}
		if acc.Steering == "dns" {
			if addrs = steerAddrs; len(addrs) == 0 {
				continue
			}
		}
		for li := range acc.Listeners {
			l := &acc.Listeners[li]
			el := edge.Listener{
				Accelerator: acc.Name,
				Protocol:    l.Protocol,
				Addrs:       addrs,
				IdleTimeout: l.IdleTimeout,
			}
			if l.Protocol == "tcp" {
				mode, err := edge.ParseEarlyData(l.EarlyData)
				if err != nil {
					return nil, fmt.Errorf("accelerators[%d].listeners[%d].early_data: %w", ai, li, err)
				}
				el.EarlyData = mode
			}
			if l.TLS != nil {
				if el.TLS, err = terminator(l.TLS, logger); err != nil {
					return nil, fmt.Errorf("accelerators[%d].listeners[%d].tls: %w", ai, li, err)
				}
			}
			for _, r := range l.PortRanges {
				el.Ports = append(el.Ports, edge.PortRange{From: uint16(r.From), To: uint16(r.To)})
			}
			if el.Admission, err = admission(l); err != nil {
				return nil, fmt.Errorf("accelerators[%d].listeners[%d].%w", ai, li, err)
			}
			el.Route = router.Listener{
				Key:      edge.ListenerKey(acc.Name, l.Protocol, el.Ports[0].From),
				Affinity: router.AffinityNone,
			}
			if l.ClientAffinity == "source_ip" {
				el.Route.Affinity = router.AffinitySourceIP
			}
			for _, g := range l.EndpointGroups {
				rg := router.Group{Region: g.Region, TrafficDial: 100, Preference: g.Preference}
				if g.TrafficDial != nil {
					rg.TrafficDial = *g.TrafficDial
				}
				for _, e := range g.Endpoints {
					w := 128
					if e.Weight != nil {
						w = *e.Weight
					}
					rg.Endpoints = append(rg.Endpoints, router.Endpoint{ID: e.ID, Weight: uint8(w)})
				}
				el.Route.Groups = append(el.Route.Groups, rg)
			}
			out = append(out, el)
		}
	}
	return out, nil
}

// terminator loads the certificates of a listener that terminates TLS:
// an expired or mismatched pair, or a key every user can read, stops the
// edge with an error naming the file.
func terminator(t *config.ListenerTLS, logger *slog.Logger) (*tlsterm.Terminator, error) {
	cfg := tlsterm.Config{ALPN: t.ALPN, HandshakeTimeout: t.HandshakeTimeout, Logger: logger}
	for _, c := range t.Certificates {
		cfg.Certificates = append(cfg.Certificates, tlsterm.Pair{CertFile: c.CertFile, KeyFile: c.KeyFile})
	}
	return tlsterm.New(cfg)
}

// usedRegions lists the regions the listeners route to, in topology order.
func usedRegions(doc *config.Document) []config.Region {
	used := map[string]bool{}
	for _, a := range doc.Accelerators {
		for _, l := range a.Listeners {
			for _, g := range l.EndpointGroups {
				used[g.Region] = true
			}
		}
	}
	var out []config.Region
	for _, r := range doc.Topology.Regions {
		if used[r.Name] {
			out = append(out, r)
		}
	}
	return out
}

// splitAddress splits an endpoint address "host" or "host:port" (an IPv6
// address with a port in brackets).
func splitAddress(s string) (host string, port uint16, err error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String(), 0, nil
	}
	if !strings.Contains(s, ":") {
		return s, 0, nil // a DNS name
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return h, uint16(n), nil
}

// regionParts builds the gateway endpoints and the health-check targets of
// the region called name.
func regionParts(doc *config.Document, name string) ([]gateway.Endpoint, []healthcheck.Target, error) {
	var eps []gateway.Endpoint
	var targets []healthcheck.Target
	for ai, acc := range doc.Accelerators {
		for li, l := range acc.Listeners {
			var reencrypt *tls.Config
			for gi, g := range l.EndpointGroups {
				if g.Region != name {
					continue
				}
				if l.TLS != nil && l.TLS.Reencrypt != nil && reencrypt == nil {
					var err error
					if reencrypt, err = reencryptConfig(l.TLS.Reencrypt); err != nil {
						return nil, nil, fmt.Errorf("accelerators[%d].listeners[%d].tls.reencrypt: %w", ai, li, err)
					}
				}
				overrides := map[uint16]uint16{}
				for _, o := range g.PortOverrides {
					overrides[uint16(o.ListenerPort)] = uint16(o.EndpointPort)
				}
				var ranges [][2]uint16
				for _, r := range l.PortRanges {
					ranges = append(ranges, [2]uint16{uint16(r.From), uint16(r.To)})
				}
				for ei, e := range g.Endpoints {
					path := fmt.Sprintf("accelerators[%d].listeners[%d].endpoint_groups[%d].endpoints[%d]", ai, li, gi, ei)
					host, port, err := splitAddress(e.Address)
					if err != nil {
						return nil, nil, fmt.Errorf("%s.address: %w", path, err)
					}
					ep := gateway.Endpoint{
						ID: e.ID, Host: host, Port: port,
						ListenerPorts: ranges, PortOverrides: overrides,
						ProxyProtocol: e.ClientIPPreservation, IdleTimeout: l.IdleTimeout,
						Reencrypt: reencrypt,
					}
					eps = append(eps, ep)
					t, err := healthTarget(e.ID, host, trafficPort(ep, ranges), g.HealthCheck)
					if err != nil {
						return nil, nil, fmt.Errorf("%s: health_check: %w", path, err)
					}
					targets = append(targets, t)
				}
			}
		}
	}
	return eps, targets, nil
}

// reencryptConfig is the TLS client configuration a region uses towards
// the endpoints of a listener that re-encrypts: the CA bundle from its
// file (an error names the file), a session cache shared by the
// listener's endpoints so that most handshakes resume.
func reencryptConfig(r *config.Reencrypt) (*tls.Config, error) {
	b, err := os.ReadFile(r.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("ca_file: no PEM certificate in %s", r.CAFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: r.ServerName, MinVersion: tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(0)}, nil
}

// trafficPort is the port an endpoint gets traffic on for the first port of
// its listener.
func trafficPort(ep gateway.Endpoint, ranges [][2]uint16) uint16 {
	if ep.Port != 0 {
		return ep.Port
	}
	first := ranges[0][0]
	if p, ok := ep.PortOverrides[first]; ok {
		return p
	}
	return first
}

func healthTarget(id, host string, trafficPort uint16, hc config.HealthCheck) (healthcheck.Target, error) {
	port := trafficPort
	if hc.Port != 0 {
		port = uint16(hc.Port)
	}
	lo, hi, err := probe.ParseStatusRange(hc.StatusCodes)
	if err != nil {
		return healthcheck.Target{}, err
	}
	typ, err := probe.ParseDNSType(hc.DNSType)
	if err != nil {
		return healthcheck.Target{}, err
	}
	rcode, err := probe.ParseRcode(hc.DNSRcode)
	if err != nil {
		return healthcheck.Target{}, err
	}
	return healthcheck.Target{
		ID: id,
		Probe: probe.Config{
			Protocol: hc.Protocol, Address: net.JoinHostPort(host, strconv.Itoa(int(port))),
			Path: hc.Path, Host: hc.Host, StatusMin: lo, StatusMax: hi,
			InsecureSkipVerify: hc.InsecureSkipVerify,
			DNSName:            hc.DNSName, DNSType: typ, DNSRcode: rcode, Timeout: hc.Timeout,
		},
		Interval:           hc.Interval,
		HealthyThreshold:   hc.HealthyThreshold,
		UnhealthyThreshold: hc.UnhealthyThreshold,
	}, nil
}

// edgePlan is the document compiled for one edge: what each component
// is to run, checked by the components' own rules, holding no resource.
// Start-up builds the components from it (buildEdge), a reload updates
// them to it (edgeNode.apply).
type edgePlan struct {
	doc *config.Document // overrides applied
	n   config.Node      // points into doc
	// listeners are every listener, TCP and UDP, without meters.
	listeners []edge.Listener
	accels    []accelView
	custom    *customPlan
	// regions are the regions the listeners route to.
	regions []config.Region
	// zone is the DNS zone, with a dns section.
	zone *dnsedge.Zone
	// endpoints are the endpoints flow logs name (flowEndpoints).
	endpoints map[string]gateway.Endpoint
}

// compileEdge compiles doc for the edge n.
func compileEdge(doc *config.Document, n config.Node, log *slog.Logger) (*edgePlan, error) {
	p := &edgePlan{doc: doc, n: n, accels: accelViews(doc, n.Name), regions: usedRegions(doc)}
	var err error
	if p.listeners, err = edgeListeners(doc, n.Name, log); err != nil {
		return nil, err
	}
	if p.custom, err = planCustom(doc); err != nil {
		return nil, err
	}
	if p.endpoints, err = flowEndpoints(doc); err != nil {
		return nil, err
	}
	// The edge compiles the routing tables; compile them here too, so
	// that the build finds what the router refuses.
	for _, l := range p.listeners {
		if l.Custom == nil {
			if _, err := router.Compile(l.Route); err != nil {
				return nil, err
			}
		}
	}
	if doc.DNS != nil {
		zc, err := dnsZoneConfig(doc)
		if err != nil {
			return nil, err
		}
		if p.zone, err = dnsedge.NewZone(zc); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// newClient builds (Run starts) the backbone client of the edge n
// towards region r.
func (en *edgeNode) newClient(r config.Region, pop *config.PoP, custom *customPlan) (*backbone.Client, error) {
	return backbone.NewClient(backbone.ClientConfig{
		Region:      r.Name,
		Addr:        r.Backbone.Address,
		Connections: pop.Backbone.Connections,
		Stripe: backbone.StripeConfig{
			Lanes:  pop.Backbone.StripeLanes,
			After:  pop.Backbone.StripeAfterBytes,
			MinRTT: pop.Backbone.StripeMinRTT,
		},
		FEC: backbone.FECConfig{
			Off:    pop.Backbone.FEC == config.FECOff,
			MinRTT: pop.Backbone.FECMinRTT,
		},
		// A retired connection's flows get as long as a draining PoP
		// gives its flows.
		Retire:          backbone.RetireConfig{Off: pop.Backbone.Retire == config.FECOff, Drain: pop.Drain.Timeout},
		KeepAlivePeriod: pop.Backbone.KeepAlivePeriod,
		IdleTimeout:     pop.Backbone.IdleTimeout,
		TLSConfigs:      pki.ClientConfigs(en.store, r.Name),
		Hello:           backbone.Hello(en.name, en.opts.Version),
		CustomRules:     custom.customRules(),
		Logger:          en.log,
	})
}

// builtEdge is an edge made from the document: every component's
// constructor has run, nothing is bound, opened or started.
type builtEdge struct {
	en  *edgeNode
	reg *prometheus.Registry
}

// buildEdge is the compile step of the edge n: it maps the document onto
// each component's own Config and runs the constructors, which apply the
// components' rules. runEdge binds and runs what it returns; tests build
// every node of every document the config package accepts with it.
func buildEdge(opts Options, n config.Node, store *pki.Store) (*builtEdge, error) {
	log := opts.Logger
	pop := *n.PoP
	en := &edgeNode{opts: opts, name: n.Name, store: store, pop: &pop, log: log, cmds: make(chan command),
		changes: make(chan struct{}, 1), anycast: map[netip.Addr]func() error{},
		epoch: time.Now().UnixNano(), clients: map[*backbone.Client]*clientRun{}}
	en.cfg = newReloader(opts, n, log)
	plan, err := compileEdge(en.cfg.effective(opts.Doc), n, log)
	if err != nil {
		return nil, err
	}
	live := &edgeLive{doc: plan.doc, n: plan.n, accels: plan.accels, custom: plan.custom, listeners: plan.listeners,
		endpoints: plan.endpoints, regions: edge.Regions{}}
	for i := range live.listeners {
		l := &live.listeners[i]
		l.Meter = flow.NewMeter(flow.Listener{Key: l.Route.Key, Accelerator: l.Accelerator, Protocol: l.Protocol}, nil)
	}
	for _, r := range plan.regions {
		c, err := en.newClient(r, n.PoP, plan.custom)
		if err != nil {
			return nil, err
		}
		live.regions[r.Name] = c
		live.clients = append(live.clients, c)
	}
	en.live.Store(live)
	if len(n.PoP.BGP.Neighbors) > 0 {
		bc, err := n.PoP.BGP.Speaker()
		if err != nil {
			return nil, err
		}
		if en.speaker, err = bgp.New(bc, log); err != nil {
			return nil, err
		}
	}
	hb := heartbeat(opts.Notify.Watchdog())
	en.e, err = edge.New(edge.Config{Node: n.Name, Listeners: live.listeners, Logger: log, Heartbeat: hb,
		MaxConns: maxConnections(n.PoP.Limits.MaxConnections), RateBuckets: n.PoP.Limits.RateBuckets}, live.regions)
	if err != nil {
		return nil, err
	}
	if en.fwd, err = udpForwarder(live.listeners, n.PoP, live.regions, hb, log); err != nil { // see udp.go
		return nil, err
	}
	reg := newRegistry(opts.Version)
	if en.dns, err = newEdgeDNS(plan.doc, n, plan.zone, reg, log); err != nil {
		return nil, err
	}
	return &builtEdge{en: en, reg: reg}, nil
}

// builtRegion is a region made from the document: every component's
// constructor has run, nothing is bound or started.
type builtRegion struct {
	rn      *regionNode
	metrics *backbone.Metrics
	gw      *gateway.Gateway
}

// compileRegion compiles doc for the region n: what the status shows, the
// gateway's endpoints and the health checks' targets.
func compileRegion(doc *config.Document, n config.Node) (*regionLive, []gateway.Endpoint, []healthcheck.Target, error) {
	eps, targets, err := regionParts(doc, n.Name)
	if err != nil {
		return nil, nil, nil, err
	}
	plan, err := planCustom(doc)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("region %s: %w", n.Name, err)
	}
	live := &regionLive{endpoints: endpointInfos(doc, n.Name), custom: plan, pops: map[string]bool{}}
	for _, p := range doc.Topology.PoPs {
		live.pops[p.Name] = true
	}
	return live, eps, targets, nil
}

// buildRegion is the compile step of the region n, as buildEdge is of an
// edge.
func buildRegion(opts Options, n config.Node) (*builtRegion, error) {
	rn := &regionNode{name: n.Name, version: opts.Version, updates: opts.Updates}
	rn.cfg = newReloader(opts, n, opts.Logger)
	live, eps, targets, err := compileRegion(rn.cfg.effective(opts.Doc), n)
	if err != nil {
		return nil, err
	}
	rn.live.Store(live)
	if rn.checker, err = healthcheck.New(targets, healthcheck.Options{Logger: opts.Logger}); err != nil {
		return nil, fmt.Errorf("region %s: %w", n.Name, err)
	}
	probes, err := live.custom.probeTargets(n.Name, live.custom.rules)
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", n.Name, err)
	}
	if rn.dests, err = healthcheck.New(probes, healthcheck.Options{Logger: opts.Logger}); err != nil {
		return nil, fmt.Errorf("region %s: custom routing probes: %w", n.Name, err)
	}
	metrics := &backbone.Metrics{} // refused handshakes and streams, exported at /metrics
	rn.gw = gateway.New(gateway.Config{Endpoints: eps, Ejector: ejector{rn.checker}, Logger: opts.Logger, Metrics: metrics,
		Custom: live.custom.regionCustom(n.Name),
		Limits: gateway.Limits{MaxFlows: n.Region.Limits.MaxFlows, MaxFlowsPerEdge: n.Region.Limits.MaxFlowsPerEdge}})
	return &builtRegion{rn: rn, metrics: metrics, gw: rn.gw}, nil
}

// admission compiles a listener's allow and deny lists and limits into
// the rules its edge gate applies.
func admission(l *config.Listener) (admit.Rules, error) {
	allow, deny, err := l.ClientLists()
	if err != nil {
		return admit.Rules{}, err
	}
	list, err := acl.Compile(allow, deny)
	if err != nil {
		return admit.Rules{}, err
	}
	if list.Empty() {
		list = nil
	}
	return admit.Rules{ACL: list, MaxFlows: l.Limits.MaxFlows, MaxFlowsPerSource: l.Limits.MaxFlowsPerSource,
		Rate: l.Limits.NewFlowsPerSecond, Burst: l.Limits.NewFlowsBurst}, nil
}

// maxConnections is an edge's cap on TCP connections: the configured
// one, or by default nine tenths of the process's descriptor limit, the
// rest kept for backbone sockets, files and the admin API.
func maxConnections(configured int) int {
	if configured > 0 {
		return configured
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 0
	}
	return int(min(rl.Cur, 1<<30) / 10 * 9)
}
