package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ZoneOf returns the network zone of address addr of the accelerator, or
// "" when the address is in no zone (every PoP serves it).
func (a *Accelerator) ZoneOf(addr netip.Addr) string {
	for _, z := range a.Zones {
		for _, s := range z.IPAddresses {
			if za, err := netip.ParseAddr(s); err == nil && za == addr {
				return z.Name
			}
		}
	}
	return ""
}

// ServesZone reports whether the PoP serves addresses of zone: a PoP
// without zones serves every zone, and every PoP serves addresses in no
// zone ("").
func (p *PoP) ServesZone(zone string) bool {
	return zone == "" || len(p.Zones) == 0 || slices.Contains(p.Zones, zone)
}

// zones checks an accelerator's zones: named, each address one of its
// ip_addresses and in one zone at most, and no prefix covering addresses
// of two zones (a PoP announcing it would draw the other zone's traffic).
func (v *validator) zones(p string, a *Accelerator, prefixes []netip.Prefix) {
	if len(a.Zones) > 0 && a.Steering == "dns" {
		v.add(p+".zones", `must be empty with steering "dns": the accelerator has no addresses`)
		return
	}
	names := map[string]string{}
	inZone := map[netip.Addr]string{}
	for zi, z := range a.Zones {
		zp := fmt.Sprintf("%s.zones[%d]", p, zi)
		switch first, dup := names[z.Name]; {
		case z.Name == "":
			v.add(zp+".name", "required")
		case !idPattern.MatchString(z.Name):
			v.add(zp+".name", "%q must be 1–63 letters, digits, '.', '_' or '-', starting with a letter or digit", z.Name)
		case dup:
			v.add(zp+".name", "duplicate zone %q (first at %s)", z.Name, first)
		default:
			names[z.Name] = zp
			v.zoneNames[z.Name] = true
		}
		if len(z.IPAddresses) == 0 {
			v.add(zp+".ip_addresses", "at least one address is required")
		}
		for ai, s := range z.IPAddresses {
			ap := fmt.Sprintf("%s.ip_addresses[%d]", zp, ai)
			addr, err := netip.ParseAddr(s)
			switch {
			case err != nil:
				v.add(ap, "%q is not an IP address", s)
			case !slices.ContainsFunc(a.IPAddresses, func(x string) bool { xa, err := netip.ParseAddr(x); return err == nil && xa == addr }):
				v.add(ap, "%s is not one of the accelerator's ip_addresses", s)
			case inZone[addr] != "":
				v.add(ap, "%s is already in zone %q", s, inZone[addr])
			default:
				inZone[addr] = z.Name
			}
		}
	}
	if len(a.Zones) == 0 {
		return
	}
	for pi, pfx := range prefixes {
		var zs []string
		for _, s := range a.IPAddresses {
			if addr, err := netip.ParseAddr(s); err == nil && pfx.Contains(addr) && !slices.Contains(zs, inZone[addr]) {
				zs = append(zs, inZone[addr])
			}
		}
		if len(zs) > 1 {
			for i := range zs {
				if zs[i] == "" {
					zs[i] = "(none)"
				}
			}
			v.add(fmt.Sprintf("%s.prefixes[%d]", p, pi), "%s covers addresses of zones %s: a PoP announcing it would draw every zone's traffic; give each zone its own prefix",
				pfx, strings.Join(zs, ", "))
		}
	}
}

// popZones checks that a PoP's zones are zones of some accelerator.
func (v *validator) popZones(p string, pop *PoP) {
	seen := map[string]bool{}
	for i, z := range pop.Zones {
		zp := fmt.Sprintf("%s.zones[%d]", p, i)
		switch {
		case seen[z]:
			v.add(zp, "%q is listed twice", z)
		case !v.zoneNames[z]:
			v.add(zp, "%q is no accelerator's zone", z)
		}
		seen[z] = true
	}
}

// Warnings lists what is valid but probably not meant, with document
// paths: with network zones in use, an accelerator whose addresses all
// share one zone, or are all served by the same PoPs (so no zone is
// independent of another), or an address no PoP serves. `anyedge
// validate` prints them and still succeeds. Call it on a valid document.
func (d *Document) Warnings() []Problem {
	used := false
	for _, a := range d.Accelerators {
		used = used || len(a.Zones) > 0
	}
	for _, p := range d.Topology.PoPs {
		used = used || len(p.Zones) > 0
	}
	var ws problems
	if !used {
		return nil
	}
	for ai := range d.Accelerators {
		a := &d.Accelerators[ai]
		if a.Steering == "dns" || len(a.IPAddresses) == 0 {
			continue
		}
		p := fmt.Sprintf("accelerators[%d]", ai)
		var zones, popSets []string
		for _, s := range a.IPAddresses {
			addr, err := netip.ParseAddr(s)
			if err != nil {
				continue
			}
			z := a.ZoneOf(addr)
			if !slices.Contains(zones, z) {
				zones = append(zones, z)
			}
			var pops []string
			for pi := range d.Topology.PoPs {
				if d.Topology.PoPs[pi].ServesZone(z) {
					pops = append(pops, d.Topology.PoPs[pi].Name)
				}
			}
			if len(pops) == 0 && len(d.Topology.PoPs) > 0 {
				ws.add(p+".ip_addresses", "%s (zone %q) is served by no PoP", s, z)
			}
			set := strings.Join(pops, ", ")
			if !slices.Contains(popSets, set) {
				popSets = append(popSets, set)
			}
		}
		switch {
		case len(zones) == 1 && zones[0] == "":
			ws.add(p+".zones", "none of the accelerator's addresses is in a zone: every PoP serves them all, so no address survives what takes another down")
		case len(zones) == 1:
			ws.add(p+".zones", "every address of the accelerator is in zone %q: that zone's failure takes the accelerator down; put an address in a second zone", zones[0])
		case len(popSets) == 1:
			ws.add(p+".zones", "every address of the accelerator is served by the same PoPs (%s): the zones share their infrastructure", popSets[0])
		}
	}
	if err, ok := ws.err().(*ValidationError); ok {
		return err.Problems
	}
	return nil
}
