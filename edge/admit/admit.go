// Package admit decides whether the edge takes a new flow, before any
// backbone work: TCP when a connection is accepted, UDP at a new flow's
// first packet. One Gate per listener applies, in this order, the
// listener's allow and deny lists (edge/acl), a new-flow rate per source
// prefix (a token bucket per IPv4 /24 and IPv6 /64, in a bounded table),
// the process-wide cap on TCP connections, the listener's cap on
// concurrent flows, and the cap on concurrent flows of one client address.
// A refusal names its flow.Reason; a flow already taken is never touched.
//
// A Gate's Rules are an immutable value swapped whole (SetRules, a
// reload); its counters and buckets carry over.
package admit

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyedge/anyedge/edge/acl"
	"github.com/anyedge/anyedge/edge/flow"
)

// Rules are one listener's admission rules. The zero value admits
// everything.
type Rules struct {
	// ACL is the listener's compiled allow and deny lists (nil: none).
	ACL *acl.List
	// MaxFlows caps the listener's concurrent flows (0: no cap).
	MaxFlows int
	// MaxFlowsPerSource caps the concurrent flows of one client address
	// on the listener (0: no cap).
	MaxFlowsPerSource int
	// Rate is the new flows per second one source prefix (IPv4 /24, IPv6
	// /64) may open on the listener (0: no limit); Burst is how many it may
	// open at once (default: Rate rounded up, at least 1).
	Rate  float64
	Burst int
}

// DefaultBuckets is how many source prefixes' buckets a Gate keeps by
// default.
const DefaultBuckets = 65536

// Global is what every TCP listener of a process shares: the cap on
// connections held at once. A nil *Global caps nothing.
type Global struct {
	max   int64
	conns atomic.Int64
}

// NewGlobal returns a cap of max connections (0: none).
func NewGlobal(max int) *Global { return &Global{max: int64(max)} }

// Conns returns the connections held now.
func (g *Global) Conns() int64 {
	if g == nil {
		return 0
	}
	return g.conns.Load()
}

// Gate admits the new flows of one listener. Its methods are safe for
// concurrent use.
type Gate struct {
	rules  atomic.Pointer[Rules]
	global *Global
	flows  atomic.Int64

	// mu guards perSource and buckets; Admit takes it only for rules
	// that use them.
	mu        sync.Mutex
	perSource map[netip.Addr]int32
	buckets   *buckets
}

// NewGate returns a Gate with rules, counting its connections against
// global (nil: the listener's flows are not process connections, UDP),
// keeping at most maxBuckets source prefixes' buckets (0:
// DefaultBuckets).
func NewGate(rules Rules, global *Global, maxBuckets int) *Gate {
	if maxBuckets <= 0 {
		maxBuckets = DefaultBuckets
	}
	g := &Gate{global: global, perSource: map[netip.Addr]int32{}, buckets: newBuckets(maxBuckets)}
	g.SetRules(rules)
	return g
}

// SetRules swaps the rules; flows already taken are untouched.
func (g *Gate) SetRules(r Rules) {
	if r.Rate > 0 && r.Burst <= 0 {
		r.Burst = max(1, int(r.Rate+0.999))
	}
	g.rules.Store(&r)
}

// Rules returns the rules in force.
func (g *Gate) Rules() Rules { return *g.rules.Load() }

// Flows returns the listener's flows admitted and not done.
func (g *Gate) Flows() int64 { return g.flows.Load() }

// Pass is an admitted flow's share of the caps; Done gives it back.
type Pass struct {
	g   *Gate
	src netip.Addr
	// perSource says the flow counts in its source's share (rules with
	// MaxFlowsPerSource when it was admitted).
	perSource bool
}

// Done returns the flow's share when it ends. Call it exactly once; the
// zero Pass (and a nil Gate's) does nothing.
func (p Pass) Done() {
	g := p.g
	if g == nil {
		return
	}
	g.flows.Add(-1)
	if g.global != nil {
		g.global.conns.Add(-1)
	}
	if !p.perSource {
		return
	}
	g.mu.Lock()
	if n := g.perSource[p.src] - 1; n > 0 {
		g.perSource[p.src] = n
	} else {
		delete(g.perSource, p.src)
	}
	g.mu.Unlock()
}

// Admit decides for a new flow from src at now. It returns the flow's
// Pass, or the reason of a refusal (the Pass is then zero). A nil Gate
// admits everything.
func (g *Gate) Admit(src netip.Addr, now time.Time) (Pass, flow.Reason) {
	if g == nil {
		return Pass{}, 0
	}
	src = src.Unmap()
	r := g.rules.Load()
	if r.ACL.Check(src) != acl.Allowed {
		return Pass{}, flow.ACLDenied
	}
	if r.Rate > 0 || r.MaxFlowsPerSource > 0 {
		g.mu.Lock()
		defer g.mu.Unlock()
	}
	if r.Rate > 0 && !g.buckets.take(src, now, r.Rate, float64(r.Burst)) {
		return Pass{}, flow.RateLimited
	}
	// The caps are checked, then taken: two flows admitted at once may
	// both pass a cap with room for one (it is a bound on resources, not
	// an exact count).
	if g.global != nil && g.global.max > 0 && g.global.conns.Load() >= g.global.max {
		return Pass{}, flow.ConnLimit
	}
	if r.MaxFlows > 0 && g.flows.Load() >= int64(r.MaxFlows) {
		return Pass{}, flow.ConnLimit
	}
	p := Pass{g: g, src: src}
	if r.MaxFlowsPerSource > 0 {
		n := g.perSource[src]
		if int(n) >= r.MaxFlowsPerSource {
			return Pass{}, flow.SourceLimit
		}
		g.perSource[src] = n + 1
		p.perSource = true
	}
	g.flows.Add(1)
	if g.global != nil {
		g.global.conns.Add(1)
	}
	return p, 0
}

// prefixKey is a source prefix: the IPv4 /24 or IPv6 /64 of an address.
type prefixKey struct {
	hi, lo uint64
}

func keyOf(a netip.Addr) prefixKey {
	if a.Is4() {
		b := a.As4()
		return prefixKey{lo: uint64(b[0])<<16 | uint64(b[1])<<8 | uint64(b[2]) | 1<<32}
	}
	b := a.As16()
	var hi uint64
	for i := range 8 {
		hi = hi<<8 | uint64(b[i])
	}
	return prefixKey{hi: hi, lo: 2 << 32}
}

// bucket is one source prefix's token bucket.
type bucket struct {
	tokens float64
	at     time.Time
}

// buckets is a table of token buckets bounded in size: two generations of
// at most max/2 each; when the young one is full it becomes the old one
// and the old one is dropped, so a prefix not seen for a generation
// forgets its bucket (and comes back with a full one). A flood of sources
// therefore costs at most max buckets of memory.
type buckets struct {
	half     int
	cur, old map[prefixKey]*bucket
}

func newBuckets(size int) *buckets {
	half := max(1, size/2)
	return &buckets{half: half, cur: make(map[prefixKey]*bucket), old: make(map[prefixKey]*bucket)}
}

// take takes one token from src's prefix's bucket, refilled at rate up to
// burst; false when it is empty.
func (t *buckets) take(src netip.Addr, now time.Time, rate, burst float64) bool {
	k := keyOf(src)
	b := t.cur[k]
	if b == nil {
		if b = t.old[k]; b != nil {
			delete(t.old, k)
		} else {
			b = &bucket{tokens: burst, at: now}
		}
		if len(t.cur) >= t.half {
			t.old, t.cur = t.cur, make(map[prefixKey]*bucket, t.half)
		}
		t.cur[k] = b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// len is the number of buckets kept.
func (t *buckets) len() int { return len(t.cur) + len(t.old) }

// Buckets returns how many source prefixes' buckets the gate keeps now.
func (g *Gate) Buckets() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buckets.len()
}
