package healthcheck

import (
	"strconv"
	"time"
)

// State is the health of one endpoint. The zero value is Unknown.
type State uint8

// States of an endpoint. See the package comment for the transitions.
const (
	// Unknown means no probe has finished yet. Routers treat it like
	// Healthy.
	Unknown State = iota
	// Healthy means the endpoint passes its probes.
	Healthy
	// Unhealthy means the endpoint failed its probes or was ejected.
	Unhealthy
)

// String returns "unknown", "healthy" or "unhealthy".
func (s State) String() string {
	switch s {
	case Unknown:
		return "unknown"
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	default:
		return "state(" + strconv.Itoa(int(s)) + ")"
	}
}

// Routable reports whether new flows may be sent to an endpoint in state s:
// true for Healthy and for Unknown (no result yet), false otherwise.
func (s State) Routable() bool {
	return s == Healthy || s == Unknown
}

// Status is the health of one endpoint at one moment.
type Status struct {
	// ID names the endpoint.
	ID string
	// State is the endpoint's health.
	State State
	// LastErr is the most recent probe failure or ejection reason. It is
	// cleared when the endpoint turns Healthy and by a passing probe while
	// Healthy, so a Healthy endpoint shows only failures below its
	// threshold.
	LastErr string
	// Latency is how long the most recent probe took.
	Latency time.Duration
	// LastProbe is when the most recent probe finished; zero before the
	// first one.
	LastProbe time.Time
	// Changed is when State last changed, or when the endpoint was added.
	Changed time.Time
	// Ejected is true while the endpoint is Unhealthy because of a passive
	// ejection (Checker.Eject) rather than failed probes.
	Ejected bool
	// Ejections counts the passive ejections that turned the endpoint
	// Unhealthy since it was added.
	Ejections int64
	// Removed is true only in the Status a Subscription reports when the
	// endpoint was removed by Checker.Update; State is then Unknown.
	Removed bool
}

// HistoryLen is how many state changes a Checker keeps per endpoint.
const HistoryLen = 8

// Change is one state change of an endpoint, as kept in its history.
type Change struct {
	// At is when the state changed.
	At time.Time
	// From and To are the states before and after.
	From, To State
	// Reason is the probe failure or ejection reason that caused it; empty
	// for a change to Healthy.
	Reason string
}

// history is a ring of an endpoint's last HistoryLen changes.
type history struct {
	ring [HistoryLen]Change
	n    int // changes recorded in all
}

func (h *history) add(c Change) {
	h.ring[h.n%HistoryLen] = c
	h.n++
}

// list returns the kept changes, oldest first.
func (h *history) list() []Change {
	k := min(h.n, HistoryLen)
	out := make([]Change, 0, k)
	for i := h.n - k; i < h.n; i++ {
		out = append(out, h.ring[i%HistoryLen])
	}
	return out
}
