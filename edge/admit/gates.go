package admit

import (
	"maps"
	"sync"
)

// Gates are the gates of a component's listeners, by listener key,
// across reloads: a listener whose key stays keeps its gate (its counters
// and buckets carry over), a new one gets its own, and a reload's new
// rules are put in force when it commits. Its methods are safe for
// concurrent use.
type Gates struct {
	global     *Global
	maxBuckets int

	// mu guards byKey, which is replaced whole, never edited.
	mu    sync.Mutex
	byKey map[string]*Gate
}

// NewGates returns an empty set whose new gates count against global and
// keep at most maxBuckets buckets (see NewGate).
func NewGates(global *Global, maxBuckets int) *Gates {
	return &Gates{global: global, maxBuckets: maxBuckets, byKey: map[string]*Gate{}}
}

// SetRules replaces the rules of the gate of listener key; flows already
// taken are untouched. It reports whether there is such a gate.
func (gs *Gates) SetRules(key string, r Rules) bool {
	gs.mu.Lock()
	g := gs.byKey[key]
	gs.mu.Unlock()
	if g != nil {
		g.SetRules(r)
	}
	return g != nil
}

// Prepare starts the gates of a new listener set, against the gates in
// force now.
func (gs *Gates) Prepare() *GatesUpdate {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return &GatesUpdate{gs: gs, inForce: maps.Clone(gs.byKey)}
}

// GatesUpdate is the gates of a new listener set (a reload), prepared and
// not yet in force. Gate and Commit are called from one goroutine.
type GatesUpdate struct {
	gs      *Gates
	inForce map[string]*Gate
	next    []keyed
}

type keyed struct {
	key   string
	gate  *Gate
	rules Rules
}

// Gate returns the gate of the new listener key: the one in force when
// Prepare was called, or a new one with rules r. r goes in force on a
// kept gate only at Commit.
func (u *GatesUpdate) Gate(key string, r Rules) *Gate {
	g := u.inForce[key]
	if g == nil {
		g = NewGate(r, u.gs.global, u.gs.maxBuckets)
	}
	u.next = append(u.next, keyed{key, g, r})
	return g
}

// Commit puts the new rules in force on every gate Gate returned and
// makes those gates the set's; the gates of listeners gone are dropped.
func (u *GatesUpdate) Commit() {
	byKey := make(map[string]*Gate, len(u.next))
	for _, k := range u.next {
		k.gate.SetRules(k.rules)
		byKey[k.key] = k.gate
	}
	u.gs.mu.Lock()
	u.gs.byKey = byKey
	u.gs.mu.Unlock()
}
