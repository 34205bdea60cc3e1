package config

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/anyedge/anyedge/backbone/portmap"
)

// Prefix lengths of custom routing subnets, as AWS Global Accelerator
// allows them (AnyPrefixLength lifts the narrow end).
const (
	widestSubnet    = 17
	narrowestSubnet = 28
)

// customListener checks a listener of a custom_routing accelerator: port
// ranges, groups with destination ports and subnets, and the subnets'
// blocks of listener ports (backbone/portmap's mapping), which must each
// lie in one port range and never overlap.
func (v *validator) customListener(p string, l *Listener) {
	if l.Protocol != "" {
		v.add(p+".protocol", "must be empty for a custom_routing listener: its groups' destination_ports name the protocols")
	}
	if l.ClientAffinity != "" {
		v.add(p+".client_affinity", "does not apply to custom_routing listeners: each port reaches one destination")
	}
	if l.EarlyData != "" {
		v.add(p+".early_data", "does not apply to custom_routing listeners")
	}
	if l.TLS != nil {
		v.add(p+".tls", "does not apply to custom_routing listeners")
	}
	if l.IdleTimeout != 0 && l.IdleTimeout < time.Second {
		v.add(p+".idle_timeout", "%s is below 1s", l.IdleTimeout)
	}
	v.portRanges(p+".port_ranges", l.PortRanges)
	if len(l.EndpointGroups) == 0 {
		v.add(p+".endpoint_groups", "at least one endpoint group is required")
	}
	type placed struct {
		path        string
		first, last uint64
	}
	var blocks []placed
	regions := make(map[string]string)
	for gi := range l.EndpointGroups {
		gp := fmt.Sprintf("%s.endpoint_groups[%d]", p, gi)
		g := &l.EndpointGroups[gi]
		v.groupRegion(gp, g, regions)
		switch {
		case len(g.Endpoints) > 0:
			v.add(gp+".endpoints", "a custom_routing group has subnets, not endpoints")
		case len(g.PortOverrides) > 0:
			v.add(gp+".port_overrides", "does not apply to custom_routing groups: destination_ports give the ports")
		case g.TrafficDial != nil:
			v.add(gp+".traffic_dial", "does not apply to custom_routing groups: each port reaches one destination")
		case g.Preference != 0:
			v.add(gp+".preference", "does not apply to custom_routing groups")
		}
		if g.HealthCheck != (HealthCheck{}) { // none: no probes
			if g.udpOnlyPorts() {
				v.udpProbe(gp+".health_check.protocol", &g.HealthCheck, "a custom_routing group with UDP-only destination_ports")
			}
			v.healthCheck(gp+".health_check", &g.HealthCheck)
		}
		dests, ok := v.destinationPorts(gp+".destination_ports", g.DestinationPorts)
		if len(g.Subnets) == 0 {
			v.add(gp+".subnets", "at least one subnet is required")
		}
		for si := range g.Subnets {
			sp := fmt.Sprintf("%s.subnets[%d]", gp, si)
			s := &g.Subnets[si]
			v.endpointID(sp, s.ID)
			pfx, pok := v.subnetCIDR(sp+".cidr", s)
			if !v.port(sp+".listener_port_base", s.ListenerPortBase) || !pok {
				continue
			}
			v.allowRules(sp+".allow", s.Allow, pfx, g.DestinationPorts)
			if !ok {
				continue
			}
			first, last := portmap.Block(uint16(s.ListenerPortBase), pfx, dests)
			size := portmap.Size(pfx, dests)
			inRange := slices.ContainsFunc(l.PortRanges, func(r PortRange) bool {
				return validRange(r) && first >= uint64(r.From) && last <= uint64(r.To)
			})
			if !inRange {
				v.add(sp+".listener_port_base", "the subnet's %d ports (%d addresses × %d destination ports) from %d end at %d, not within one of the listener's port_ranges",
					size, uint64(1)<<(32-pfx.Bits()), size>>(32-pfx.Bits()), first, last)
				continue
			}
			for _, o := range blocks {
				if max(first, o.first) <= min(last, o.last) {
					v.add(sp+".listener_port_base", "ports %d–%d overlap %s (ports %d–%d)", first, last, o.path, o.first, o.last)
				}
			}
			blocks = append(blocks, placed{path: sp, first: first, last: last})
		}
	}
}

// destinationPorts checks a custom routing group's destination ports and
// returns them in portmap's form; ok is false when any is unusable.
func (v *validator) destinationPorts(p string, ds []DestinationPorts) (out []portmap.DestPorts, ok bool) {
	if len(ds) == 0 {
		v.add(p, "at least one destination port range is required")
		return nil, false
	}
	ok = true
	for i, d := range ds {
		dp := fmt.Sprintf("%s[%d]", p, i)
		okFrom, okTo := v.port(dp+".from", d.From), v.port(dp+".to", d.To)
		if !okFrom || !okTo {
			ok = false
			continue
		}
		if d.From > d.To {
			v.add(dp, "from %d is above to %d", d.From, d.To)
			ok = false
			continue
		}
		var protos portmap.Proto
		for pi, name := range d.Protocols {
			pr, known := portmap.ParseProto(name)
			switch {
			case !known:
				v.add(fmt.Sprintf("%s.protocols[%d]", dp, pi), `must be "tcp" or "udp", got %q`, name)
				ok = false
			case protos.Has(pr):
				v.add(fmt.Sprintf("%s.protocols[%d]", dp, pi), "duplicate %q", name)
			}
			protos |= pr
		}
		if len(d.Protocols) == 0 {
			v.add(dp+".protocols", `at least one of "tcp" and "udp"`)
			ok = false
		}
		for j := range i {
			o := ds[j]
			if o.From <= o.To && max(d.From, o.From) <= min(d.To, o.To) {
				v.add(dp, "port %d is also in %s[%d]", max(d.From, o.From), p, j)
				ok = false
			}
		}
		out = append(out, portmap.DestPorts{From: uint16(d.From), To: uint16(d.To), Protos: protos})
	}
	return out, ok
}

// subnetCIDR checks a subnet's CIDR: IPv4, no host bits, /17–/28 unless
// any_prefix_length.
func (v *validator) subnetCIDR(p string, s *Subnet) (netip.Prefix, bool) {
	pfx, err := netip.ParsePrefix(s.CIDR)
	switch {
	case s.CIDR == "":
		v.add(p, "required (an IPv4 CIDR such as 10.1.0.0/24)")
	case err != nil:
		v.add(p, "%q is not a CIDR prefix", s.CIDR)
	case !pfx.Addr().Is4():
		v.add(p, "%s is not IPv4: custom routing destinations are IPv4 subnets", s.CIDR)
	case pfx != pfx.Masked():
		v.add(p, "%s has host bits set (did you mean %s?)", s.CIDR, pfx.Masked())
	case pfx.Bits() < widestSubnet:
		v.add(p, "/%d is wider than /%d: a /%d has %d addresses, more than there are listener ports for even one destination port",
			pfx.Bits(), widestSubnet, pfx.Bits(), uint64(1)<<(32-pfx.Bits()))
	case pfx.Bits() > narrowestSubnet && !s.AnyPrefixLength:
		v.add(p, "/%d is narrower than /%d; set any_prefix_length: true to allow it", pfx.Bits(), narrowestSubnet)
	default:
		return pfx, true
	}
	return netip.Prefix{}, false
}

// allowRules checks a subnet's configured allows: addresses inside the
// subnet, ports among the group's destination ports.
func (v *validator) allowRules(p string, rules []AllowRule, pfx netip.Prefix, ds []DestinationPorts) {
	for i, r := range rules {
		rp := fmt.Sprintf("%s[%d]", p, i)
		if len(r.Addresses) == 0 {
			v.add(rp+".addresses", "at least one address is required (allow_all_traffic allows the whole subnet)")
		}
		for ai, s := range r.Addresses {
			a, err := netip.ParseAddr(s)
			switch {
			case err != nil:
				v.add(fmt.Sprintf("%s.addresses[%d]", rp, ai), "%q is not an IP address", s)
			case !pfx.Contains(a):
				v.add(fmt.Sprintf("%s.addresses[%d]", rp, ai), "%s is outside the subnet %s", s, pfx)
			}
		}
		for pi, port := range r.Ports {
			if !slices.ContainsFunc(ds, func(d DestinationPorts) bool { return port >= d.From && port <= d.To }) {
				v.add(fmt.Sprintf("%s.ports[%d]", rp, pi), "%d is not one of the group's destination_ports", port)
			}
		}
	}
}
