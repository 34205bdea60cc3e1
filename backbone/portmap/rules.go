package portmap

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// Custom routing traffic is denied by default. A subnet's destinations are
// allowed by its configuration (all of them, or chosen addresses and
// ports: AWS Global Accelerator's AllowCustomRoutingTraffic) and by
// run-time operations that allow or deny more (Op). The rule for one
// destination is: the most specific run-time override that covers it
// decides (address and port, then address, then the whole subnet); with
// none, the configuration decides. An operation replaces the overrides it
// covers, so the latest operation covering a destination wins.

// Grant allows destinations of a subnet: every address and port with All,
// else each address of Addrs (each port of Ports, or every port when
// Ports is empty).
type Grant struct {
	All   bool
	Addrs []netip.Addr
	Ports []uint16
}

// Op is a run-time allow or deny of destinations of one subnet.
type Op struct {
	Subnet string
	Allow  bool
	Grant
}

// Override is one run-time decision: for the whole subnet (Addr invalid),
// every port of one address (Port 0), or one destination.
type Override struct {
	Subnet string
	Addr   netip.Addr
	Port   uint16
	Allow  bool
}

// MaxOverrides bounds the run-time overrides a Rules holds, so that the
// state a region pushes to its edges stays small.
const MaxOverrides = 5000

// ErrTooMany is returned by Apply when an operation would hold more than
// MaxOverrides overrides.
var ErrTooMany = errors.New("too many run-time overrides")

// ErrUnknownSubnet is returned by Apply for a subnet no table has.
var ErrUnknownSubnet = errors.New("unknown subnet")

// Rules is the allow state of every subnet of some tables: configuration
// and run-time overrides. It is immutable; Apply returns a new one.
type Rules struct {
	subnets map[string]*subnetRules
	n       int // overrides held
}

type subnetRules struct {
	s *Subnet
	// From the configuration.
	cfgAll   bool
	cfgAddrs map[netip.Addr]bool
	cfgDests map[netip.AddrPort]bool
	// Run-time overrides; all is nil when the subnet has none.
	all   *bool
	addrs map[netip.Addr]bool
	dests map[netip.AddrPort]bool
}

// NewRules returns the configured rules of the subnets of tables: grants
// maps a subnet ID to its configured grants.
func NewRules(tables []*Table, grants map[string][]Grant) *Rules {
	r := &Rules{subnets: map[string]*subnetRules{}}
	for _, t := range tables {
		for _, s := range t.Subnets() {
			sr := &subnetRules{s: s, cfgAddrs: map[netip.Addr]bool{}, cfgDests: map[netip.AddrPort]bool{}}
			for _, g := range grants[s.ID] {
				switch {
				case g.All:
					sr.cfgAll = true
				case len(g.Ports) == 0:
					for _, a := range g.Addrs {
						sr.cfgAddrs[a] = true
					}
				default:
					for _, a := range g.Addrs {
						for _, p := range g.Ports {
							sr.cfgDests[netip.AddrPortFrom(a, p)] = true
						}
					}
				}
			}
			r.subnets[s.ID] = sr
		}
	}
	return r
}

// Allowed reports whether traffic of subnet id to dest is allowed.
func (r *Rules) Allowed(id string, dest netip.AddrPort) bool {
	if r == nil {
		return false
	}
	sr := r.subnets[id]
	if sr == nil {
		return false
	}
	if v, ok := sr.dests[dest]; ok {
		return v
	}
	if v, ok := sr.addrs[dest.Addr()]; ok {
		return v
	}
	if sr.all != nil {
		return *sr.all
	}
	return sr.cfgAll || sr.cfgAddrs[dest.Addr()] || sr.cfgDests[dest]
}

// Check says what is wrong with op for these rules, or nil: an unknown
// subnet, an address outside it, a port that is not a destination port.
func (r *Rules) Check(op Op) error {
	sr := r.subnets[op.Subnet]
	if sr == nil {
		return fmt.Errorf("%w %q", ErrUnknownSubnet, op.Subnet)
	}
	if op.All && (len(op.Addrs) > 0 || len(op.Ports) > 0) {
		return errors.New("all excludes addresses and ports")
	}
	if !op.All && len(op.Addrs) == 0 {
		return errors.New("name addresses, or all")
	}
	for _, a := range op.Addrs {
		if !sr.s.Prefix.Contains(a) {
			return fmt.Errorf("address %s is outside subnet %s (%s)", a, sr.s.ID, sr.s.Prefix)
		}
	}
	for _, p := range op.Ports {
		if !slices.ContainsFunc(sr.s.Ports, func(d DestPorts) bool { return p >= d.From && p <= d.To }) {
			return fmt.Errorf("port %d is not a destination port of subnet %s", p, sr.s.ID)
		}
	}
	return nil
}

// Apply returns the rules with op applied; r is unchanged.
func (r *Rules) Apply(op Op) (*Rules, error) {
	if err := r.Check(op); err != nil {
		return nil, err
	}
	old := r.subnets[op.Subnet]
	sr := &subnetRules{s: old.s, cfgAll: old.cfgAll, cfgAddrs: old.cfgAddrs, cfgDests: old.cfgDests,
		addrs: maps.Clone(old.addrs), dests: maps.Clone(old.dests)}
	if sr.addrs == nil {
		sr.addrs = map[netip.Addr]bool{}
	}
	if sr.dests == nil {
		sr.dests = map[netip.AddrPort]bool{}
	}
	v := op.Allow
	switch {
	case op.All:
		sr.all, sr.addrs, sr.dests = &v, map[netip.Addr]bool{}, map[netip.AddrPort]bool{}
	case len(op.Ports) == 0:
		sr.all = old.all
		for _, a := range op.Addrs {
			sr.addrs[a] = v
			for d := range sr.dests {
				if d.Addr() == a {
					delete(sr.dests, d)
				}
			}
		}
	default:
		sr.all = old.all
		for _, a := range op.Addrs {
			for _, p := range op.Ports {
				sr.dests[netip.AddrPortFrom(a, p)] = v
			}
		}
	}
	n := r.n - old.count() + sr.count()
	if n > MaxOverrides {
		return nil, fmt.Errorf("%w: %d, at most %d", ErrTooMany, n, MaxOverrides)
	}
	out := &Rules{subnets: maps.Clone(r.subnets), n: n}
	out.subnets[op.Subnet] = sr
	return out, nil
}

func (sr *subnetRules) count() int {
	n := len(sr.addrs) + len(sr.dests)
	if sr.all != nil {
		n++
	}
	return n
}

// Overrides lists the run-time overrides, by subnet, address and port.
func (r *Rules) Overrides() []Override {
	out := []Override{}
	if r == nil {
		return out
	}
	for id, sr := range r.subnets {
		if sr.all != nil {
			out = append(out, Override{Subnet: id, Allow: *sr.all})
		}
		for a, v := range sr.addrs {
			out = append(out, Override{Subnet: id, Addr: a, Allow: v})
		}
		for d, v := range sr.dests {
			out = append(out, Override{Subnet: id, Addr: d.Addr(), Port: d.Port(), Allow: v})
		}
	}
	slices.SortFunc(out, func(a, b Override) int {
		if c := cmp.Compare(a.Subnet, b.Subnet); c != 0 {
			return c
		}
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
	return out
}

// WithOverrides returns the configured part of r with the overrides os in
// place of r's own: what an edge builds from the overrides its region
// pushes. Overrides naming unknown subnets are ignored.
func (r *Rules) WithOverrides(os []Override) *Rules {
	out := &Rules{subnets: make(map[string]*subnetRules, len(r.subnets))}
	for id, old := range r.subnets {
		out.subnets[id] = &subnetRules{s: old.s, cfgAll: old.cfgAll, cfgAddrs: old.cfgAddrs, cfgDests: old.cfgDests,
			addrs: map[netip.Addr]bool{}, dests: map[netip.AddrPort]bool{}}
	}
	for _, o := range os {
		sr := out.subnets[o.Subnet]
		if sr == nil {
			continue
		}
		v := o.Allow
		switch {
		case !o.Addr.IsValid():
			sr.all = &v
		case o.Port == 0:
			sr.addrs[o.Addr] = v
		default:
			sr.dests[netip.AddrPortFrom(o.Addr, o.Port)] = v
		}
		out.n++
	}
	return out
}

// explicit returns the destinations of subnet id allowed one by one, in
// the configuration or by an override.
func (r *Rules) explicit(id string) []netip.AddrPort {
	sr := r.subnets[id]
	if sr == nil {
		return nil
	}
	var out []netip.AddrPort
	for d := range sr.cfgDests {
		if v, ok := sr.dests[d]; !ok || v {
			out = append(out, d)
		}
	}
	for d, v := range sr.dests {
		if v && !sr.cfgDests[d] {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// Explicit lists, for every subnet, the destinations allowed one by one
// (by address and port, in the configuration or at run time) and still
// allowed: the destinations worth probing. Subnets and addresses allowed
// whole are not expanded.
func (r *Rules) Explicit() map[string][]netip.AddrPort {
	out := map[string][]netip.AddrPort{}
	if r == nil {
		return out
	}
	for id := range r.subnets {
		var live []netip.AddrPort
		for _, d := range r.explicit(id) {
			if r.Allowed(id, d) {
				live = append(live, d)
			}
		}
		if len(live) > 0 {
			out[id] = live
		}
	}
	return out
}
