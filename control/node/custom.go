package node

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/portmap"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/router"
	"github.com/anyedge/anyedge/healthcheck"
)

// Idle timeouts of custom routing flows when the listener sets none.
const (
	customIdleTCP = 340 * time.Second
	customIdleUDP = 30 * time.Second
)

// customListener is one custom routing listener of the document, with its
// port map compiled.
type customListener struct {
	ai, li int // accelerators[ai].listeners[li]
	acc    *config.Accelerator
	l      *config.Listener
	table  *portmap.Table
}

// customPlan is every custom routing listener of a document and the
// configured allow rules of their subnets.
type customPlan struct {
	listeners []customListener
	tables    []*portmap.Table
	rules     *portmap.Rules
}

// planCustom compiles the custom routing listeners of doc.
func planCustom(doc *config.Document) (*customPlan, error) {
	p := &customPlan{}
	grants := map[string][]portmap.Grant{}
	for ai := range doc.Accelerators {
		acc := &doc.Accelerators[ai]
		if acc.Kind != config.KindCustomRouting {
			continue
		}
		for li := range acc.Listeners {
			l := &acc.Listeners[li]
			pl := portmap.Listener{Accelerator: acc.Name}
			for _, r := range l.PortRanges {
				pl.Ports = append(pl.Ports, portmap.PortRange{From: uint16(r.From), To: uint16(r.To)})
			}
			pl.Key = edge.ListenerKey(acc.Name, "custom", pl.Ports[0].From)
			for _, g := range l.EndpointGroups {
				var dests []portmap.DestPorts
				for _, d := range g.DestinationPorts {
					dp := portmap.DestPorts{From: uint16(d.From), To: uint16(d.To)}
					for _, name := range d.Protocols {
						pr, _ := portmap.ParseProto(name)
						dp.Protos |= pr
					}
					dests = append(dests, dp)
				}
				for _, s := range g.Subnets {
					pfx, err := netip.ParsePrefix(s.CIDR)
					if err != nil {
						return nil, fmt.Errorf("accelerators[%d].listeners[%d]: subnet %s: %w", ai, li, s.ID, err)
					}
					pl.Subnets = append(pl.Subnets, portmap.Subnet{ID: s.ID, Region: g.Region, Prefix: pfx,
						Base: uint16(s.ListenerPortBase), Ports: dests})
					grants[s.ID] = subnetGrants(s)
				}
			}
			t, err := portmap.Compile(pl)
			if err != nil {
				return nil, fmt.Errorf("accelerators[%d].listeners[%d]: %w", ai, li, err)
			}
			p.listeners = append(p.listeners, customListener{ai: ai, li: li, acc: acc, l: l, table: t})
			p.tables = append(p.tables, t)
		}
	}
	p.rules = portmap.NewRules(p.tables, grants)
	return p, nil
}

// subnetGrants are the allows a subnet's configuration gives.
func subnetGrants(s config.Subnet) []portmap.Grant {
	var out []portmap.Grant
	if s.AllowAllTraffic {
		out = append(out, portmap.Grant{All: true})
	}
	for _, r := range s.Allow {
		g := portmap.Grant{}
		for _, a := range r.Addresses {
			if ad, err := netip.ParseAddr(a); err == nil {
				g.Addrs = append(g.Addrs, ad)
			}
		}
		for _, p := range r.Ports {
			g.Ports = append(g.Ports, uint16(p))
		}
		out = append(out, g)
	}
	return out
}

// edgeListeners returns the edge listeners of custom listener cl on addrs:
// one per protocol its groups serve, each picking by the port map. Their
// route groups name each region's subnets as endpoints, for readiness and
// for the backbone clients the edge needs.
func (cl customListener) edgeListeners(addrs []netip.Addr) []edge.Listener {
	var protos portmap.Proto
	var groups []router.Group
	for _, g := range cl.l.EndpointGroups {
		rg := router.Group{Region: g.Region, TrafficDial: 100}
		for _, s := range g.Subnets {
			rg.Endpoints = append(rg.Endpoints, router.Endpoint{ID: s.ID, Weight: 128})
		}
		groups = append(groups, rg)
		for _, d := range g.DestinationPorts {
			for _, name := range d.Protocols {
				pr, _ := portmap.ParseProto(name)
				protos |= pr
			}
		}
	}
	var ports []edge.PortRange
	for _, r := range cl.l.PortRanges {
		ports = append(ports, edge.PortRange{From: uint16(r.From), To: uint16(r.To)})
	}
	var out []edge.Listener
	for _, pc := range []struct {
		proto portmap.Proto
		name  string
		idle  time.Duration
	}{{portmap.TCP, "tcp", customIdleTCP}, {portmap.UDP, "udp", customIdleUDP}} {
		if !protos.Has(pc.proto) {
			continue
		}
		el := edge.Listener{
			Accelerator: cl.acc.Name, Protocol: pc.name, Addrs: addrs, Ports: ports,
			IdleTimeout: cl.l.IdleTimeout, Custom: cl.table,
			Route: router.Listener{Key: edge.ListenerKey(cl.acc.Name, pc.name, ports[0].From), Groups: groups},
		}
		if el.IdleTimeout == 0 {
			el.IdleTimeout = pc.idle
		}
		if pc.proto == portmap.TCP {
			// One destination, so one attempt: the client's first bytes
			// can never reach two endpoints, and travel with the header.
			el.EarlyData = edge.EarlyAlways
		}
		out = append(out, el)
	}
	return out
}

// regionCustom is the gateway's custom routing configuration for region.
func (p *customPlan) regionCustom(region string) gateway.Custom {
	c := gateway.Custom{Subnets: map[string]gateway.CustomSubnet{}, Rules: p.rules}
	for _, cl := range p.listeners {
		idleTCP, idleUDP := customIdleTCP, customIdleUDP
		if cl.l.IdleTimeout != 0 {
			idleTCP, idleUDP = cl.l.IdleTimeout, cl.l.IdleTimeout
		}
		for _, g := range cl.l.EndpointGroups {
			if g.Region != region {
				continue
			}
			for _, s := range g.Subnets {
				c.Subnets[s.ID] = gateway.CustomSubnet{Table: cl.table, ProxyProtocol: s.ClientIPPreservation,
					IdleTCP: idleTCP, IdleUDP: idleUDP}
			}
		}
	}
	return c
}

// customRules are the configured rules, or nil when the document has no
// custom routing (an edge then ignores the regions' custom state).
func (p *customPlan) customRules() *portmap.Rules {
	if len(p.tables) == 0 {
		return nil
	}
	return p.rules
}

// probeTargets are the health-check targets of region's custom routing
// destinations that rules allow one by one (address and port,
// portmap.Rules.Explicit), in groups with a health_check, probed as the
// endpoints of a standard group are (healthTarget): on the destination's
// address, at health_check.port or the destination port. Whole subnets
// and whole addresses are not expanded: a /17 is 32,768 addresses.
func (p *customPlan) probeTargets(region string, rules *portmap.Rules) ([]healthcheck.Target, error) {
	explicit := rules.Explicit()
	var out []healthcheck.Target
	for _, cl := range p.listeners {
		for gi, g := range cl.l.EndpointGroups {
			if g.Region != region || g.HealthCheck.Protocol == "" {
				continue // no health_check: no probes
			}
			for _, s := range g.Subnets {
				for _, d := range explicit[s.ID] {
					t, err := healthTarget(probeID(s.ID, d), d.Addr().String(), d.Port(), g.HealthCheck)
					if err != nil {
						return nil, fmt.Errorf("accelerators[%d].listeners[%d].endpoint_groups[%d].health_check: %w", cl.ai, cl.li, gi, err)
					}
					out = append(out, t)
				}
			}
		}
	}
	return out, nil
}

// probeID names a custom routing destination's probe: "subnet/addr:port"
// (a subnet ID has no '/').
func probeID(subnet string, dest netip.AddrPort) string { return subnet + "/" + dest.String() }

// parseProbeID is the inverse of probeID.
func parseProbeID(id string) (string, netip.AddrPort, bool) {
	subnet, dest, ok := strings.Cut(id, "/")
	if !ok {
		return "", netip.AddrPort{}, false
	}
	d, err := netip.ParseAddrPort(dest)
	return subnet, d, err == nil
}
