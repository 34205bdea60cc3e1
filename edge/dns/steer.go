package dns

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
)

// Availability says, per steered accelerator, which PoPs may take new
// clients (ready for it and not draining). An accelerator missing from the
// map counts as available everywhere: before any view of the fleet exists
// the server fails open to the configured order. The server keeps the map:
// do not modify it after SetAvailability.
type Availability map[string][]string

// steerTable is the compiled Steering of a zone.
type steerTable struct {
	ttl      uint32
	pops     []steerPoP
	rules    []steerRule // longest prefix first
	catchAll []int
	all      []int
}

type steerPoP struct {
	name   string
	v4, v6 []netip.Addr
}

type steerRule struct {
	prefix netip.Prefix
	pops   []int
}

func compileSteering(s Steering) (steerTable, error) {
	t := steerTable{ttl: seconds(s.TTL)}
	idx := map[string]int{}
	for i, p := range s.PoPs {
		if _, dup := idx[p.Name]; dup {
			return t, fmt.Errorf("dns steering: pop %q listed twice", p.Name)
		}
		idx[p.Name] = i
		sp := steerPoP{name: p.Name}
		for _, a := range p.Addrs {
			if a = a.Unmap(); a.Is4() {
				sp.v4 = append(sp.v4, a)
			} else {
				sp.v6 = append(sp.v6, a)
			}
		}
		t.pops = append(t.pops, sp)
		t.all = append(t.all, i)
	}
	indices := func(names []string) ([]int, error) {
		var out []int
		for _, n := range names {
			i, ok := idx[n]
			if !ok {
				return nil, fmt.Errorf("dns steering: %q is not a steering pop", n)
			}
			out = append(out, i)
		}
		return out, nil
	}
	var err error
	if t.catchAll, err = indices(s.CatchAll); err != nil {
		return t, err
	}
	for _, r := range s.Clients {
		pops, err := indices(r.PoPs)
		if err != nil {
			return t, err
		}
		pfx := r.Prefix.Masked()
		if pfx.Addr().Is4In6() {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		t.rules = append(t.rules, steerRule{prefix: pfx, pops: pops})
	}
	slices.SortStableFunc(t.rules, func(a, b steerRule) int { return b.prefix.Bits() - a.prefix.Bits() })
	return t, nil
}

// match finds the rule for a client known to srcBits bits (the ECS source
// prefix length, or the full address length), and the scope: the prefix
// length of client addresses for which the same rule applies.
func (t *steerTable) match(client netip.Addr, srcBits int) (rule *steerRule, scope int) {
	client = client.Unmap()
	for i := range t.rules {
		r := &t.rules[i]
		if r.prefix.Addr().Is4() == client.Is4() && r.prefix.Bits() <= srcBits && r.prefix.Contains(client) {
			rule = r
			scope = r.prefix.Bits()
			break
		}
	}
	// More specific rules that do not apply bound the scope: clients that
	// share more leading bits with them might match them instead.
	for i := range t.rules {
		q := &t.rules[i]
		if q == rule || q.prefix.Addr().Is4() != client.Is4() {
			continue
		}
		if rule != nil && (q.prefix.Bits() <= rule.prefix.Bits() || !rule.prefix.Overlaps(q.prefix)) {
			continue
		}
		scope = max(scope, min(commonBits(client, q.prefix.Addr())+1, q.prefix.Bits()))
	}
	return rule, scope
}

// commonBits is the length of the common leading bits of two addresses of
// one family.
func commonBits(a, b netip.Addr) int {
	if a.Is4() {
		x, y := a.As4(), b.As4()
		return bits.LeadingZeros32(binary.BigEndian.Uint32(x[:]) ^ binary.BigEndian.Uint32(y[:]))
	}
	x, y := a.As16(), b.As16()
	hi := bits.LeadingZeros64(binary.BigEndian.Uint64(x[:8]) ^ binary.BigEndian.Uint64(y[:8]))
	if hi < 64 {
		return hi
	}
	return 64 + bits.LeadingZeros64(binary.BigEndian.Uint64(x[8:])^binary.BigEndian.Uint64(y[8:]))
}

// choose picks the PoP for a client: the first available PoP of the
// client's order that has an address of the family asked for, then of the
// catch-all, then of every PoP in configuration order; when none is
// available anywhere it fails open to the first PoP of those orders with
// such an address. It returns -1 when no PoP has one.
func (t *steerTable) choose(rule *steerRule, avail []bool, v6 bool) int {
	order := t.catchAll
	if rule != nil {
		order = rule.pops
	}
	usable := func(i int, needAvail bool) bool {
		p := &t.pops[i]
		if (v6 && len(p.v6) == 0) || (!v6 && len(p.v4) == 0) {
			return false
		}
		return !needAvail || avail == nil || avail[i]
	}
	for _, needAvail := range []bool{true, false} {
		for _, list := range [][]int{order, t.catchAll, t.all} {
			for _, i := range list {
				if usable(i, needAvail) {
					return i
				}
			}
		}
	}
	return -1
}

// availability compiles an Availability against the zone's PoPs: per
// steered accelerator, a flag per PoP index (nil: all available).
func (t *steerTable) availability(a Availability) map[string][]bool {
	out := make(map[string][]bool, len(a))
	for acc, names := range a {
		flags := make([]bool, len(t.pops))
		for i, p := range t.pops {
			flags[i] = slices.Contains(names, p.name)
		}
		out[acc] = flags
	}
	return out
}
