// Package dns is the edge's authoritative DNS server: it answers for one
// zone that names every accelerator (SOA, NS, A and AAAA, over UDP and TCP,
// with EDNS0, truncation, RFC 8482 minimal ANY and response-rate limiting),
// and steers clients of DNS-steered accelerators to the nearest available
// PoP from EDNS Client Subnet or the resolver's address.
//
// The zone is an immutable snapshot (Zone) and the PoPs' availability
// another (Availability); the server reads both through atomic pointers,
// so SetZone and SetAvailability swap them under live traffic.
package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ZoneConfig describes a zone. Names are absolute ("ns1.accel.example.net",
// with or without the final dot) except Name.Name, which is relative to
// Origin.
type ZoneConfig struct {
	// Origin is the zone's apex, e.g. "accel.example.net".
	Origin string
	// TTL of static A and AAAA records.
	TTL time.Duration
	// NSTTL of the SOA, the NS records and the nameservers' addresses.
	NSTTL time.Duration
	// SOA fields; Minimum is also the TTL of negative answers.
	SOA SOA
	// Nameservers are the zone's NS records.
	Nameservers []Nameserver
	// Names are the accelerators' names.
	Names []Name
	// Steering says how steered names are answered.
	Steering Steering
}

// SOA is the zone's start of authority.
type SOA struct {
	MName, RName                    string
	Serial                          uint32
	Refresh, Retry, Expire, Minimum time.Duration
}

// Nameserver is one NS record; Addrs are served for a name inside the zone.
type Nameserver struct {
	Name  string
	Addrs []netip.Addr
}

// Name is one accelerator's name in the zone.
type Name struct {
	// Name is relative to the origin ("www", "api.eu").
	Name string
	// Accelerator is the accelerator's name, the key of Availability.
	Accelerator string
	// Addrs are the static addresses of an anycast accelerator.
	Addrs []netip.Addr
	// Steered names are answered with the nearest available PoP's
	// address instead of Addrs.
	Steered bool
}

// Steering maps clients to PoPs.
type Steering struct {
	// TTL of steered answers.
	TTL time.Duration
	// PoPs in configuration order, with their unicast addresses.
	PoPs []PoP
	// Clients map prefixes to PoP names, nearest first; the longest
	// matching prefix wins.
	Clients []ClientRule
	// CatchAll is the order for clients that match no prefix.
	CatchAll []string
}

// PoP is one steering target.
type PoP struct {
	Name  string
	Addrs []netip.Addr
}

// ClientRule sends clients of Prefix to PoPs, nearest first.
type ClientRule struct {
	Prefix netip.Prefix
	PoPs   []string
}

// Zone is an immutable, compiled zone. Build it with NewZone.
type Zone struct {
	origin  string // canonical, with the final dot
	soa     *dns.SOA
	negSOA  []dns.RR // the SOA with the negative TTL, for the authority section
	ns      []dns.RR
	glue    []dns.RR // A/AAAA of in-zone nameservers, for the additional section
	negTTL  uint32
	names   map[string]*node
	steer   steerTable
	steered []string // accelerators with steered names, in order
}

// node is what the zone holds at one name. A node without records is an
// empty non-terminal: it exists (NOERROR, no data) because names below it do.
type node struct {
	a, aaaa []dns.RR
	// steered names compute A and AAAA per query.
	steered     bool
	accelerator string
	owner       string // the node's name, for steered records
}

// NewZone compiles c into a Zone, or says what is wrong with it.
func NewZone(c ZoneConfig) (*Zone, error) {
	origin := dns.CanonicalName(c.Origin)
	if _, ok := dns.IsDomainName(origin); !ok || origin == "." {
		return nil, fmt.Errorf("dns zone: origin %q is not a domain name", c.Origin)
	}
	if len(c.Nameservers) == 0 {
		return nil, errors.New("dns zone: no nameservers")
	}
	z := &Zone{origin: origin, names: map[string]*node{}, negTTL: seconds(c.SOA.Minimum)}
	nsTTL := seconds(c.NSTTL)
	z.soa = &dns.SOA{
		Hdr:    dns.RR_Header{Name: origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: nsTTL},
		Ns:     dns.CanonicalName(c.SOA.MName),
		Mbox:   dns.CanonicalName(c.SOA.RName),
		Serial: c.SOA.Serial, Refresh: seconds(c.SOA.Refresh), Retry: seconds(c.SOA.Retry),
		Expire: seconds(c.SOA.Expire), Minttl: z.negTTL,
	}
	neg := *z.soa
	neg.Hdr.Ttl = min(nsTTL, z.negTTL)
	z.negSOA = []dns.RR{&neg}
	z.names[origin] = &node{owner: origin}
	for _, ns := range c.Nameservers {
		name := dns.CanonicalName(ns.Name)
		z.ns = append(z.ns, &dns.NS{Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: nsTTL}, Ns: name})
		if !dns.IsSubDomain(origin, name) || len(ns.Addrs) == 0 {
			continue
		}
		n, err := z.add(name)
		if err != nil {
			return nil, err
		}
		n.a, n.aaaa = addressRRs(name, ns.Addrs, nsTTL)
		z.glue = append(append(z.glue, n.a...), n.aaaa...)
	}
	for _, nm := range c.Names {
		name := dns.CanonicalName(strings.TrimSuffix(nm.Name, ".") + "." + origin)
		n, err := z.add(name)
		if err != nil {
			return nil, err
		}
		if len(n.a)+len(n.aaaa) > 0 || n.steered {
			return nil, fmt.Errorf("dns zone: %s is named twice", name)
		}
		n.accelerator = nm.Accelerator
		if nm.Steered {
			n.steered = true
			if !slices.Contains(z.steered, nm.Accelerator) {
				z.steered = append(z.steered, nm.Accelerator)
			}
			continue
		}
		n.a, n.aaaa = addressRRs(name, nm.Addrs, seconds(c.TTL))
	}
	var err error
	if z.steer, err = compileSteering(c.Steering); err != nil {
		return nil, err
	}
	if len(z.steered) > 0 && len(z.steer.catchAll) == 0 {
		return nil, errors.New("dns zone: steered names need a catch-all")
	}
	return z, nil
}

// add returns the node at name, creating it and the empty non-terminals
// between it and the origin.
func (z *Zone) add(name string) (*node, error) {
	if _, ok := dns.IsDomainName(name); !ok || !dns.IsSubDomain(z.origin, name) {
		return nil, fmt.Errorf("dns zone: %q is not a name inside %s", name, z.origin)
	}
	n := z.names[name]
	if n == nil {
		n = &node{owner: name}
		z.names[name] = n
	}
	for p := name; p != z.origin; {
		i, _ := dns.NextLabel(p, 0)
		p = p[i:]
		if z.names[p] == nil {
			z.names[p] = &node{owner: p}
		}
	}
	return n, nil
}

// Origin returns the zone's apex with the final dot.
func (z *Zone) Origin() string { return z.origin }

// Steered lists the accelerators that have steered names.
func (z *Zone) Steered() []string { return slices.Clone(z.steered) }

func addressRRs(name string, addrs []netip.Addr, ttl uint32) (a, aaaa []dns.RR) {
	for _, ad := range addrs {
		if rr := addressRR(name, ad, ttl); ad.Unmap().Is4() {
			a = append(a, rr)
		} else {
			aaaa = append(aaaa, rr)
		}
	}
	return a, aaaa
}

func addressRR(name string, ad netip.Addr, ttl uint32) dns.RR {
	ad = ad.Unmap()
	if ad.Is4() {
		return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ad.AsSlice()}
	}
	return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: ad.AsSlice()}
}

// seconds converts a TTL, clamped to 0 … 2^31−1 s.
func seconds(d time.Duration) uint32 {
	s := int64(d / time.Second)
	return uint32(max(0, min(s, 1<<31-1)))
}
