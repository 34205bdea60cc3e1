package router

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrNoRoute is returned by Pick when no group can take the flow: no region
// is reachable, no reachable group has both a traffic dial and an endpoint
// of weight above zero, or every such endpoint has been excluded.
var ErrNoRoute = errors.New("no route")

// Affinity selects the flow key that picks an endpoint.
type Affinity uint8

const (
	// AffinityNone hashes the 5-tuple: a client's flows spread over endpoints.
	AffinityNone Affinity = iota
	// AffinitySourceIP hashes the client address only: all flows of one
	// client go to the same endpoint.
	AffinitySourceIP
)

// String returns the configuration spelling of a: "none" or "source_ip".
func (a Affinity) String() string {
	switch a {
	case AffinityNone:
		return "none"
	case AffinitySourceIP:
		return "source_ip"
	default:
		return fmt.Sprintf("affinity(%d)", uint8(a))
	}
}

// Endpoint is one target of a group, named by its fleet-wide ID.
type Endpoint struct {
	// ID names the endpoint; it must be non-empty and unique in its group.
	ID string
	// Weight is the endpoint's share of the group's new flows; 0 drains it.
	Weight uint8
}

// Group is the set of endpoints of a listener in one region.
type Group struct {
	// Region names the region that dials these endpoints; unique per listener.
	Region string
	// TrafficDial is the percentage (0–100) of new flows the group accepts.
	// It is taken literally: 0 sends the group no new flows, so a missing
	// configuration value must be mapped to 100 by the caller.
	TrafficDial int
	// Preference, when non-zero, orders groups statically (lower first)
	// before backbone RTT; groups with Preference 0 come after all others.
	Preference int
	// Endpoints are the group's targets.
	Endpoints []Endpoint
}

// Listener is what the router needs to know about one listener.
type Listener struct {
	// Key identifies the listener in errors, e.g. "acc/tcp/443".
	Key string
	// Affinity selects the flow key.
	Affinity Affinity
	// Groups are the listener's endpoint groups, in any order.
	Groups []Group
}

// Targets returns the set of the listener's region and endpoint pairs,
// as Choices (FailOpen unset).
func (l Listener) Targets() map[Choice]bool {
	m := map[Choice]bool{}
	for _, g := range l.Groups {
		for _, ep := range g.Endpoints {
			m[Choice{Region: g.Region, EndpointID: ep.ID}] = true
		}
	}
	return m
}

// Flow identifies a new flow as the edge sees it.
type Flow struct {
	// Proto is the IP protocol number: 6 for TCP, 17 for UDP.
	Proto uint8
	// Src is the client's address and port.
	Src netip.AddrPort
	// Dst is the accelerator address and listener port the client reached.
	Dst netip.AddrPort
}

// View is the edge's current knowledge of the world. Its methods are called
// on every Pick and must be cheap and safe for concurrent use.
type View interface {
	// RegionRTT returns the measured backbone RTT to region and whether the
	// region is reachable at all.
	RegionRTT(region string) (rtt time.Duration, reachable bool)
	// EndpointHealthy reports whether the endpoint of the given region may
	// receive new flows; an endpoint of unknown health should be healthy.
	EndpointHealthy(region, endpointID string) bool
}

// Exclude reports whether a region or endpoint was already tried for this
// flow. Pick calls it with endpointID == "" to ask about a whole region and
// with both names to ask about one endpoint of that region. A nil Exclude
// excludes nothing.
type Exclude func(region, endpointID string) bool

// Choice is the outcome of Pick.
type Choice struct {
	// Region is the region to carry the flow to.
	Region string
	// EndpointID is the endpoint the region is to dial.
	EndpointID string
	// FailOpen is set when no candidate endpoint was healthy and the choice
	// ignored health.
	FailOpen bool
}

// Table is a listener's routing configuration compiled for Pick: validated,
// with every hash that does not depend on the flow precomputed. A Table is
// immutable and safe for concurrent use; build a new one on reload.
type Table struct {
	key      string
	affinity Affinity
	groups   []group
}

type group struct {
	region string
	dial   int
	pref   int
	salt   uint64 // hash of the region name, salts the dial decision
	eps    []endpoint
}

type endpoint struct {
	id     string
	weight uint8
	hash   uint64 // hash of the ID, mixed with the flow hash per flow
}

// Compile validates l and returns its Table. It does not keep references to
// l's slices.
func Compile(l Listener) (*Table, error) {
	var errs []error
	if l.Affinity != AffinityNone && l.Affinity != AffinitySourceIP {
		errs = append(errs, fmt.Errorf("unknown %v", l.Affinity))
	}
	t := &Table{key: l.Key, affinity: l.Affinity, groups: make([]group, 0, len(l.Groups))}
	regions := make(map[string]bool, len(l.Groups))
	for i, g := range l.Groups {
		switch {
		case g.Region == "":
			errs = append(errs, fmt.Errorf("group %d: empty region", i))
		case regions[g.Region]:
			errs = append(errs, fmt.Errorf("group %d: duplicate region %q", i, g.Region))
		}
		regions[g.Region] = true
		if g.TrafficDial < 0 || g.TrafficDial > 100 {
			errs = append(errs, fmt.Errorf("group %q: traffic dial %d out of range 0-100", g.Region, g.TrafficDial))
		}
		cg := group{
			region: g.Region,
			dial:   g.TrafficDial,
			pref:   g.Preference,
			salt:   hashString(seedRegion, g.Region),
			eps:    make([]endpoint, 0, len(g.Endpoints)),
		}
		ids := make(map[string]bool, len(g.Endpoints))
		for j, e := range g.Endpoints {
			switch {
			case e.ID == "":
				errs = append(errs, fmt.Errorf("group %q: endpoint %d: empty id", g.Region, j))
			case ids[e.ID]:
				errs = append(errs, fmt.Errorf("group %q: duplicate endpoint %q", g.Region, e.ID))
			}
			ids[e.ID] = true
			cg.eps = append(cg.eps, endpoint{id: e.ID, weight: e.Weight, hash: hashString(seedEndpoint, e.ID)})
		}
		t.groups = append(t.groups, cg)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("router: listener %q: %w", l.Key, err)
	}
	return t, nil
}

// Key returns the listener key the Table was compiled from.
func (t *Table) Key() string { return t.key }

// orderBuf is the number of groups ordered without allocating.
const orderBuf = 32

// ranked is a group in the order of one Pick.
type ranked struct {
	rtt time.Duration
	idx int
}

// Pick chooses the region and endpoint for a new flow f given the view v,
// skipping whatever exclude names. It returns ErrNoRoute when nothing can
// take the flow. Pick does not allocate for listeners of up to 32 groups.
func (t *Table) Pick(f Flow, v View, exclude Exclude) (Choice, error) {
	var buf [orderBuf]ranked
	order := buf[:0]
	for i := range t.groups {
		g := &t.groups[i]
		if g.dial <= 0 {
			continue
		}
		rtt, ok := v.RegionRTT(g.region)
		if !ok || (exclude != nil && exclude(g.region, "")) {
			continue
		}
		order = append(order, ranked{rtt: rtt, idx: i})
	}
	if len(order) == 0 {
		return Choice{}, ErrNoRoute
	}
	// Insertion sort: a handful of groups, and sort.Slice would allocate.
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && t.before(order[j], order[j-1]); j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}

	fh := flowHash(t.affinity, f)
	for _, failOpen := range [2]bool{false, true} {
		fallback := -1
		for _, r := range order {
			g := &t.groups[r.idx]
			admit := admits(fh, g.salt, g.dial)
			if admit {
				if ep := t.best(g, fh, v, exclude, failOpen); ep >= 0 {
					return Choice{Region: g.region, EndpointID: g.eps[ep].id, FailOpen: failOpen}, nil
				}
				continue
			}
			if fallback < 0 && t.eligible(g, v, exclude, failOpen) {
				fallback = r.idx
			}
		}
		if fallback >= 0 {
			g := &t.groups[fallback]
			ep := t.best(g, fh, v, exclude, failOpen)
			return Choice{Region: g.region, EndpointID: g.eps[ep].id, FailOpen: failOpen}, nil
		}
	}
	return Choice{}, ErrNoRoute
}

// before orders groups by preference (set before unset, lower first), then
// RTT, then region name, then configuration position.
func (t *Table) before(a, b ranked) bool {
	ga, gb := &t.groups[a.idx], &t.groups[b.idx]
	if (ga.pref != 0) != (gb.pref != 0) {
		return ga.pref != 0
	}
	if ga.pref != gb.pref {
		return ga.pref < gb.pref
	}
	if a.rtt != b.rtt {
		return a.rtt < b.rtt
	}
	if ga.region != gb.region {
		return ga.region < gb.region
	}
	return a.idx < b.idx
}

// usable reports whether e may take a flow: weight above zero, not excluded
// and, unless failing open, healthy.
func usable(g *group, e *endpoint, v View, exclude Exclude, failOpen bool) bool {
	if e.weight == 0 {
		return false
	}
	if exclude != nil && exclude(g.region, e.id) {
		return false
	}
	return failOpen || v.EndpointHealthy(g.region, e.id)
}

// eligible reports whether g has a usable endpoint.
func (t *Table) eligible(g *group, v View, exclude Exclude, failOpen bool) bool {
	for i := range g.eps {
		if usable(g, &g.eps[i], v, exclude, failOpen) {
			return true
		}
	}
	return false
}

// best returns the index of g's usable endpoint with the highest weighted
// rendezvous score for the flow hash fh, or -1 if none is usable.
func (t *Table) best(g *group, fh uint64, v View, exclude Exclude, failOpen bool) int {
	bi := -1
	var bh uint64
	var bw uint8
	var bs float64
	bsOK := false // bs is computed lazily: equal weights compare hashes only
	for i := range g.eps {
		e := &g.eps[i]
		if !usable(g, e, v, exclude, failOpen) {
			continue
		}
		h := mix(fh ^ e.hash)
		if bi < 0 {
			bi, bh, bw, bsOK = i, h, e.weight, false
			continue
		}
		if e.weight == bw {
			if h > bh {
				bi, bh, bsOK = i, h, false
			}
			continue
		}
		if !bsOK {
			bs, bsOK = score(bw, bh), true
		}
		if s := score(e.weight, h); s > bs {
			bi, bh, bw, bs = i, h, e.weight, s
		}
	}
	return bi
}
