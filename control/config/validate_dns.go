package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dns checks the dns section and what accelerators say about DNS.
func (v *validator) dns(d *Document) {
	steered := false
	for i := range d.Accelerators {
		a := &d.Accelerators[i]
		p := fmt.Sprintf("accelerators[%d]", i)
		switch a.Steering {
		case "anycast":
		case "dns":
			steered = true
			if d.DNS == nil {
				v.add(p+".steering", `"dns" needs the dns section (dns.zone, dns.steering.pops and dns.steering.catch_all)`)
			}
		default:
			v.add(p+".steering", `must be "anycast" or "dns", got %q`, a.Steering)
		}
	}
	z := d.DNS
	if z == nil {
		for i := range d.Accelerators {
			if d.Accelerators[i].DNSName != "" {
				v.add(fmt.Sprintf("accelerators[%d].dns_name", i), "set, but the document has no dns section")
			}
		}
		return
	}
	zone := ""
	switch _, ok := dns.IsDomainName(z.Zone); {
	case z.Zone == "":
		v.add("dns.zone", `required (the zone's name, e.g. "accel.example.net")`)
	case !ok || z.Zone == "." || !isHostname(z.Zone):
		v.add("dns.zone", "%q is not a domain name", z.Zone)
	default:
		zone = dns.CanonicalName(z.Zone)
	}
	for i, l := range z.Listen {
		if msg := checkHostPort(l, false); msg != "" {
			v.add(fmt.Sprintf("dns.listen[%d]", i), "%s", msg)
		}
	}
	v.ttl("dns.ttl", z.TTL)
	v.ttl("dns.ns_ttl", z.NSTTL)
	if z.UDPSize < 512 || z.UDPSize > 4096 {
		v.add("dns.udp_size", "%d is outside 512–4096", z.UDPSize)
	}

	// Names in the zone, to catch an accelerator and a nameserver that
	// would own the same name.
	owners := map[string]string{}
	own := func(name, path string) {
		if first, dup := owners[name]; dup {
			v.add(path, "%s is also the name of %s", strings.TrimSuffix(name, "."), first)
			return
		}
		owners[name] = path
	}
	if len(z.Nameservers) == 0 {
		v.add("dns.nameservers", "at least one nameserver is required")
	}
	for i, ns := range z.Nameservers {
		np := fmt.Sprintf("dns.nameservers[%d]", i)
		if !isHostname(ns.Name) {
			v.add(np+".name", "%q is not a host name", ns.Name)
			continue
		}
		name := dns.CanonicalName(ns.Name)
		inZone := zone != "" && dns.IsSubDomain(zone, name)
		switch {
		case inZone && len(ns.Addresses) == 0:
			v.add(np+".addresses", "%s is inside the zone: give its addresses (the glue the parent zone needs)", ns.Name)
		case !inZone && zone != "" && len(ns.Addresses) > 0:
			v.add(np+".addresses", "%s is outside the zone %s: its addresses are not served here", ns.Name, z.Zone)
		}
		for j, s := range ns.Addresses {
			if a, err := netip.ParseAddr(s); err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
				v.add(fmt.Sprintf("%s.addresses[%d]", np, j), "%q is not a unicast IP address", s)
			}
		}
		if name == zone {
			v.add(np+".name", "the zone's apex cannot be a nameserver name")
		} else if inZone {
			own(name, np+".name")
		}
	}
	if !isHostname(z.SOA.MName) {
		v.add("dns.soa.mname", "%q is not a host name", z.SOA.MName)
	}
	switch {
	case strings.Contains(z.SOA.RName, "@"):
		v.add("dns.soa.rname", "%q: write the mailbox as a name (hostmaster@example.net is hostmaster.example.net)", z.SOA.RName)
	case !isHostname(z.SOA.RName):
		v.add("dns.soa.rname", "%q is not a domain name", z.SOA.RName)
	}
	v.ttl("dns.soa.refresh", z.SOA.Refresh)
	v.ttl("dns.soa.retry", z.SOA.Retry)
	v.ttl("dns.soa.expire", z.SOA.Expire)
	v.ttl("dns.soa.minimum", z.SOA.Minimum)

	r := z.RRL
	if r.ResponsesPerSecond < 1 || r.ResponsesPerSecond > 1_000_000 {
		v.add("dns.rrl.responses_per_second", "%d is outside 1–1000000", r.ResponsesPerSecond)
	}
	if r.Slip != nil && (*r.Slip < 0 || *r.Slip > 10) {
		v.add("dns.rrl.slip", "%d is outside 0–10", *r.Slip)
	}
	if r.IPv4PrefixLen < 8 || r.IPv4PrefixLen > 32 {
		v.add("dns.rrl.ipv4_prefix_len", "%d is outside 8–32", r.IPv4PrefixLen)
	}
	if r.IPv6PrefixLen < 16 || r.IPv6PrefixLen > 128 {
		v.add("dns.rrl.ipv6_prefix_len", "%d is outside 16–128", r.IPv6PrefixLen)
	}

	for i := range d.Accelerators {
		a := &d.Accelerators[i]
		p := fmt.Sprintf("accelerators[%d].dns_name", i)
		switch {
		case a.DNSName == "":
			v.add(p, "cannot derive a DNS name from name %q: set dns_name", a.Name)
		case strings.HasSuffix(a.DNSName, ".") || !isHostname(a.DNSName):
			v.add(p, "%q is not a name relative to the zone (labels of letters, digits and '-')", a.DNSName)
		case zone != "":
			own(dns.CanonicalName(a.DNSName+"."+zone), p)
		}
	}
	v.steering(d, &z.Steering, steered)
}

// ttl checks a TTL: whole seconds, 1s to 68 years (a 31-bit count).
func (v *validator) ttl(path string, d time.Duration) {
	switch {
	case d < time.Second:
		v.add(path, "%s is below 1s", d)
	case d%time.Second != 0:
		v.add(path, "%s is not a whole number of seconds", d)
	case d > (1<<31-1)*time.Second:
		v.add(path, "%s is above 2147483647s", d)
	}
}

// steering checks dns.steering, and the listeners of steered accelerators
// (they share each PoP's unicast addresses, so their ports must not meet).
func (v *validator) steering(d *Document, s *Steering, steered bool) {
	const p = "dns.steering"
	v.ttl(p+".ttl", s.TTL)
	isPoP := map[string]bool{}
	var popNames []string
	for _, pop := range d.Topology.PoPs {
		isPoP[pop.Name] = true
		popNames = append(popNames, pop.Name)
	}
	anycast := map[netip.Addr]bool{}
	for _, a := range d.Accelerators {
		for _, s := range a.IPAddresses {
			if addr, err := netip.ParseAddr(s); err == nil {
				anycast[addr] = true
			}
		}
	}
	steerPoP := map[string]string{}
	addrOwner := map[netip.Addr]string{}
	for i, sp := range s.PoPs {
		pp := fmt.Sprintf("%s.pops[%d]", p, i)
		switch first, dup := steerPoP[sp.Name]; {
		case sp.Name == "":
			v.add(pp+".name", "required")
		case !isPoP[sp.Name]:
			v.add(pp+".name", "%q is not a pop of topology.pops (pops: %s)", sp.Name, list(popNames))
		case dup:
			v.add(pp+".name", "duplicate pop %q (first at %s)", sp.Name, first)
		default:
			steerPoP[sp.Name] = pp
		}
		if len(sp.Addresses) == 0 {
			v.add(pp+".addresses", "at least one address is required")
		}
		for j, as := range sp.Addresses {
			ap := fmt.Sprintf("%s.addresses[%d]", pp, j)
			addr, err := netip.ParseAddr(as)
			switch first, dup := addrOwner[addr]; {
			case err != nil || addr.Zone() != "" || addr.Is4In6():
				v.add(ap, "%q is not an IP address", as)
			case addr.IsUnspecified() || addr.IsMulticast():
				v.add(ap, "%s is not a unicast address", as)
			case anycast[addr]:
				v.add(ap, "%s is an accelerator's anycast address", as)
			case dup:
				v.add(ap, "%s is also an address of %s", as, first)
			default:
				addrOwner[addr] = pp
			}
		}
	}
	popList := func(path string, names []string) {
		seen := map[string]bool{}
		for i, n := range names {
			switch {
			case steerPoP[n] == "":
				v.add(fmt.Sprintf("%s[%d]", path, i), "%q is not a pop of dns.steering.pops", n)
			case seen[n]:
				v.add(fmt.Sprintf("%s[%d]", path, i), "%q is listed twice", n)
			}
			seen[n] = true
		}
	}
	prefixes := map[netip.Prefix]string{}
	for i, c := range s.Clients {
		cp := fmt.Sprintf("%s.clients[%d]", p, i)
		pfx, err := netip.ParsePrefix(c.Prefix)
		switch first, dup := prefixes[pfx]; {
		case err != nil:
			v.add(cp+".prefix", "%q is not a CIDR prefix", c.Prefix)
		case pfx != pfx.Masked():
			v.add(cp+".prefix", "%s has host bits set (did you mean %s?)", c.Prefix, pfx.Masked())
		case dup:
			v.add(cp+".prefix", "duplicate prefix %s (first at %s)", c.Prefix, first)
		default:
			prefixes[pfx] = cp
		}
		if len(c.PoPs) == 0 {
			v.add(cp+".pops", "at least one pop is required")
		}
		popList(cp+".pops", c.PoPs)
	}
	popList(p+".catch_all", s.CatchAll)
	if !steered {
		return
	}
	if len(s.PoPs) == 0 {
		v.add(p+".pops", `required: an accelerator has steering "dns"`)
	}
	if len(s.CatchAll) == 0 {
		v.add(p+".catch_all", `required: an accelerator has steering "dns", and a client that matches no prefix needs a pop`)
	}
	// Steered listeners share the PoPs' addresses: no two accelerators may
	// use one port of one protocol.
	type portKey struct {
		proto string
		port  int
	}
	used := map[portKey]string{}
	for ai, a := range d.Accelerators {
		if a.Steering != "dns" {
			continue
		}
		for li, l := range a.Listeners {
			for ri, r := range l.PortRanges {
				if !validRange(r) {
					continue
				}
				here := fmt.Sprintf("accelerators[%d].listeners[%d].port_ranges[%d]", ai, li, ri)
				for port := r.From; port <= r.To; port++ {
					k := portKey{l.Protocol, port}
					if first, dup := used[k]; dup && !strings.HasPrefix(first, fmt.Sprintf("accelerators[%d].", ai)) {
						v.add(here, "%s port %d is also used by %s (steered accelerators share the pops' addresses)", l.Protocol, port, first)
						break
					}
					used[k] = here
				}
			}
		}
	}
}
