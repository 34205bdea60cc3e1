package backbone

import (
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// Retiring a connection whose path got longer. quic-go keeps a
// connection's minimum RTT for its whole life, and its HyStart ends slow
// start as soon as a round's RTT exceeds that minimum by 4–16 ms. A pooled
// connection dialled while the path was short (or before a route change
// onto a longer path) therefore leaves slow start at a tiny window and
// grows by one packet per round trip from there: in the WAN lab one such
// connection carried under 28 Mbit/s on a 200 Mbit/s, 200 ms path where a
// fresh connection carries 135 (BENCHMARKS.md). quic-go offers no way to
// reset the minimum or the congestion state, so the pool retires such a
// connection: it dials a replacement on the same socket (same 5-tuple, so
// the same path on an ECMP network), moves new flows to it once the region
// has answered on it, and lets the old one drain — its flows finish on it,
// and it closes when the last has ended or after RetireConfig.Drain.
//
// The rule (riseWatch): a sample is high when both the connection's
// smoothed RTT and its latest RTT sample are at least
// max(RiseFactor × MinRTT, MinRTT + RiseMin). Both, because each alone
// misleads: the latest sample of an idle connection is the RTT probe's
// (wire.MsgProbe), whose acknowledgement the region may delay by its
// max_ack_delay (25 ms) — quic-go takes that delay out of the smoothed RTT
// but not out of the latest sample — and one late packet lifts the latest
// sample for a moment; the smoothed RTT (an average with weight 1/8) lags
// for seconds after a queue has drained. Only a connection with no open
// stream is sampled: queueing under load raises both figures on a healthy
// connection, and an idle connection has no queue of its own. A sample
// taken while the connection carries a flow ends the streak, so a busy
// connection is never churned; it is retired only once it has been idle
// and high for After and at least Samples samples (the region speaks at
// least once a second, and every message is a sample). A single low
// sample ends the streak too.
//
// Rate limit and backoff (retirer, one per slot of the pool): a slot
// retires at most once per HoldDown. When the replacement's handshake RTT
// is itself high against the old minimum, the path really is long and
// the old minimum was stale; the replacement's minimum is the new
// baseline, and the slot's hold-down doubles (up to HoldDownMax) so that
// a route that flaps between a short and a long path does not redial
// every few minutes. A replacement that measures the short path again
// puts the hold-down back to HoldDown.

// RetireConfig says when the pool retires a connection whose path RTT
// rose (retire.go). The zero value is the defaults.
type RetireConfig struct {
	// Off turns retirement off.
	Off bool
	// RiseFactor and RiseMin define a high sample: smoothed and latest
	// RTT both at least max(RiseFactor × MinRTT, MinRTT + RiseMin).
	// Defaults 2 and 20 ms.
	RiseFactor float64
	RiseMin    time.Duration
	// After and Samples: how long, and over how many samples at least,
	// an idle connection must stay high. Defaults 10 s and 8.
	After   time.Duration
	Samples int
	// HoldDown is the least time between two retirements of one slot of
	// the pool; it doubles up to HoldDownMax while replacements find the
	// path long too. Defaults 5 min and 1 h.
	HoldDown, HoldDownMax time.Duration
	// Drain bounds how long a retired connection stays open for the flows
	// it still carries; they are reset after it. Default 60 s; an edge
	// sets its PoP's drain timeout (pop.drain.timeout), what a draining
	// PoP gives its flows.
	Drain time.Duration
}

// Retirement defaults (RetireConfig).
const (
	DefaultRiseFactor        = 2
	DefaultRiseMin           = 20 * time.Millisecond
	DefaultRetireAfter       = 10 * time.Second
	DefaultRetireSamples     = 8
	DefaultRetireHoldDown    = 5 * time.Minute
	DefaultRetireHoldDownMax = time.Hour
	DefaultRetireDrain       = 60 * time.Second
)

func (r *RetireConfig) setDefaults() {
	setDefault(&r.RiseFactor, DefaultRiseFactor)
	setDefault(&r.RiseMin, DefaultRiseMin)
	setDefault(&r.After, DefaultRetireAfter)
	setDefault(&r.Samples, DefaultRetireSamples)
	setDefault(&r.HoldDown, DefaultRetireHoldDown)
	setDefault(&r.HoldDownMax, max(r.HoldDown, DefaultRetireHoldDownMax))
	setDefault(&r.Drain, DefaultRetireDrain)
}

func setDefault[T int | float64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// threshold is the RTT at or above which a sample is high against the
// baseline minRTT.
func (r *RetireConfig) threshold(minRTT time.Duration) time.Duration {
	return max(time.Duration(r.RiseFactor*float64(minRTT)), minRTT+r.RiseMin)
}

// RetireReason says why a connection of the pool was retired.
type RetireReason uint8

// Retirement reasons.
const (
	// RetireRTTRise: the connection's RTT stayed far above the minimum it
	// measured at its handshake.
	RetireRTTRise RetireReason = iota
	numRetireReasons
)

// RetireReasons lists every retirement reason.
var RetireReasons = []RetireReason{RetireRTTRise}

// String names the reason for status and metric labels.
func (RetireReason) String() string { return "rtt_rise" }

// riseWatch is the rule over one connection's samples; its control
// goroutine owns it.
type riseWatch struct {
	cfg   *RetireConfig
	since time.Time // the first high sample of the streak; zero: none
	n     int       // high samples in the streak
}

// observe takes one sample of the connection's RTT, taken at now with
// idle set when no stream was open on it, and reports whether the rise
// has lasted long enough to retire the connection.
func (w *riseWatch) observe(now time.Time, st quic.ConnectionStats, idle bool) bool {
	if !idle || st.MinRTT <= 0 || min(st.SmoothedRTT, st.LatestRTT) < w.cfg.threshold(st.MinRTT) {
		w.since, w.n = time.Time{}, 0
		return false
	}
	if w.n == 0 {
		w.since = now
	}
	w.n++
	return w.n >= w.cfg.Samples && now.Sub(w.since) >= w.cfg.After
}

// retirer rate-limits the retirements of one slot of the pool.
type retirer struct {
	// mu guards every field below.
	mu   sync.Mutex
	hold time.Duration // the current hold-down; 0 until the first retirement
	next time.Time     // no retirement before
	// oldMin is the baseline of the connection retired last, until its
	// replacement reports its handshake RTT; zero: no retirement pending.
	oldMin time.Duration
}

// allow reports whether the slot may retire a connection at now.
func (r *retirer) allow(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.oldMin == 0 && !now.Before(r.next)
}

// retired records a retirement at now of a connection whose baseline was
// minRTT.
func (r *retirer) retired(cfg *RetireConfig, now time.Time, minRTT time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hold == 0 {
		r.hold = cfg.HoldDown
	}
	r.oldMin = minRTT
	r.next = now.Add(r.hold)
}

// replaced records the handshake RTT of the connection that took the slot
// at now. After a retirement it sets the hold-down: doubled when the
// replacement is long too (the path really is long; the old minimum was
// stale), back to the base when it measured the short path again.
func (r *retirer) replaced(cfg *RetireConfig, now time.Time, handshake time.Duration) (long bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.oldMin == 0 {
		return false
	}
	long = handshake >= cfg.threshold(r.oldMin)
	if long {
		r.hold = min(2*r.hold, cfg.HoldDownMax)
	} else {
		r.hold = cfg.HoldDown
	}
	r.oldMin = 0
	r.next = now.Add(r.hold)
	return long
}

// abandoned records that the retirement pending since the last retired
// found no replacement before the retired connection ended; the slot
// redials as after any loss, and the hold-down stays.
func (r *retirer) abandoned() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.oldMin = 0
}
