package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anyedge/anyedge/healthcheck/probe"
)

// Defaults applied to zero fields of Target and Options.
const (
	// DefaultInterval is the probe interval of a Target with none.
	DefaultInterval = 10 * time.Second
	// DefaultThreshold is the healthy and unhealthy threshold of a Target
	// with none.
	DefaultThreshold = 3
	// DefaultJitter is the jitter fraction of Options with none.
	DefaultJitter = 0.1
	// maxJitter caps Options.Jitter so that an interval never shrinks to
	// nothing.
	maxJitter = 0.5
)

// Target is one endpoint to check.
type Target struct {
	// ID names the endpoint; unique within a Checker. Required.
	ID string
	// Probe describes the active probe. A zero Probe.Timeout becomes the
	// smaller of probe.DefaultTimeout and Interval.
	Probe probe.Config
	// Interval between the end of one probe and the start of the next,
	// before jitter. Zero means DefaultInterval.
	Interval time.Duration
	// HealthyThreshold consecutive passing probes turn an Unhealthy endpoint
	// Healthy. Zero means DefaultThreshold.
	HealthyThreshold int
	// UnhealthyThreshold consecutive failed probes turn a Healthy endpoint
	// Unhealthy. Zero means DefaultThreshold.
	UnhealthyThreshold int
}

// withDefaults returns t with zero fields defaulted, or an error.
func (t Target) withDefaults() (Target, error) {
	if t.ID == "" {
		return t, errors.New("empty target id")
	}
	if t.Interval < 0 || t.HealthyThreshold < 0 || t.UnhealthyThreshold < 0 {
		return t, fmt.Errorf("target %q: negative interval or threshold", t.ID)
	}
	if t.Interval == 0 {
		t.Interval = DefaultInterval
	}
	if t.HealthyThreshold == 0 {
		t.HealthyThreshold = DefaultThreshold
	}
	if t.UnhealthyThreshold == 0 {
		t.UnhealthyThreshold = DefaultThreshold
	}
	if t.Probe.Timeout == 0 {
		t.Probe.Timeout = min(probe.DefaultTimeout, t.Interval)
	}
	return t, nil
}

// Options tune a Checker. The zero value is usable.
type Options struct {
	// Logger receives state changes (info) and probe failures (debug); the
	// checker adds component=healthcheck. Nil means no logging.
	Logger *slog.Logger
	// Jitter is the largest fraction by which an interval is randomly
	// stretched or shrunk. Zero means DefaultJitter; negative means none.
	// Values above 0.5 are capped at 0.5.
	Jitter float64
	// NewProber builds the prober of a target. Nil means probe.New; tests
	// substitute fakes.
	NewProber func(probe.Config) (probe.Prober, error)
}

// Checker probes a set of targets and keeps their health state. Its methods
// are safe for concurrent use.
type Checker struct {
	log       *slog.Logger
	jitter    float64
	newProber func(probe.Config) (probe.Prober, error)

	// wg counts running target loops. Add is called only with mu held and
	// runCtx non-nil, so it never races with Run's final Wait.
	wg sync.WaitGroup

	// mu guards the fields below and the mutable fields of every target and
	// Subscription.
	mu      sync.Mutex
	targets map[string]*target
	subs    map[*Subscription]struct{}
	runCtx  context.Context // non-nil while Run runs
	ran     bool
}

// target is the checker's record of one Target.
type target struct {
	cfg    Target        // immutable
	prober probe.Prober  // immutable
	kick   chan struct{} // capacity 1: probe now

	// Guarded by Checker.mu.
	cancel     context.CancelFunc // stops the loop; nil while not running
	status     Status
	succ, fail int // consecutive passing and failed probes
	history    history
}

// New returns a Checker for targets. Probing starts with Run.
func New(targets []Target, opts Options) (*Checker, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	jitter := opts.Jitter
	switch {
	case jitter == 0:
		jitter = DefaultJitter
	case jitter < 0:
		jitter = 0
	case jitter > maxJitter:
		jitter = maxJitter
	}
	newProber := opts.NewProber
	if newProber == nil {
		newProber = probe.New
	}
	c := &Checker{
		log:       log.With("component", "healthcheck"),
		jitter:    jitter,
		newProber: newProber,
		targets:   make(map[string]*target),
		subs:      make(map[*Subscription]struct{}),
	}
	if err := c.Update(targets); err != nil {
		return nil, err
	}
	return c, nil
}

// Run probes every target until ctx is done, then waits for all probe
// loops to stop and returns nil. It returns an error at once if called
// more than once.
func (c *Checker) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		return errors.New("healthcheck: run called twice")
	}
	c.ran = true
	c.runCtx = ctx
	for _, t := range c.targets {
		c.startLocked(t)
	}
	c.mu.Unlock()

	<-ctx.Done()

	c.mu.Lock()
	c.runCtx = nil
	for _, t := range c.targets {
		t.cancel = nil
	}
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// Update replaces the set of targets, for a configuration reload. Targets
// whose ID and Target are unchanged keep running as they are. A target
// whose Probe is unchanged but for its Timeout keeps its state and counts
// under its new timing and thresholds; one whose Probe changed otherwise
// starts again as Unknown.
// On error nothing changes.
func (c *Checker) Update(targets []Target) error {
	next := make(map[string]Target, len(targets))
	for _, t := range targets {
		t, err := t.withDefaults()
		if err != nil {
			return fmt.Errorf("healthcheck: %w", err)
		}
		if _, dup := next[t.ID]; dup {
			return fmt.Errorf("healthcheck: duplicate target id %q", t.ID)
		}
		next[t.ID] = t
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	// Build every new prober before touching state, so that an invalid
	// target leaves the checker as it was.
	probers := make(map[string]probe.Prober)
	for id, t := range next {
		if old, ok := c.targets[id]; ok && old.cfg == t {
			continue
		}
		p, err := c.newProber(t.Probe)
		if err != nil {
			return fmt.Errorf("healthcheck: target %q: %w", id, err)
		}
		probers[id] = p
	}

	now := time.Now()
	for id, old := range c.targets {
		if _, ok := next[id]; ok {
			continue
		}
		c.stopLocked(old)
		delete(c.targets, id)
		c.publishLocked(Status{ID: id, Changed: now, Removed: true})
		c.log.Info("endpoint removed", "endpoint", id)
	}
	for id, cfg := range next {
		old, existed := c.targets[id]
		if existed && old.cfg == cfg {
			continue
		}
		t := &target{cfg: cfg, prober: probers[id], kick: make(chan struct{}, 1)}
		if existed {
			t.history = old.history
		}
		if existed && sameCheck(old.cfg.Probe, cfg.Probe) {
			// Same check, other timing: keep what we know.
			t.status, t.succ, t.fail = old.status, old.succ, old.fail
		} else {
			if existed && old.status.State != Unknown {
				t.history.add(Change{At: now, From: old.status.State, To: Unknown, Reason: "health check changed"})
			}
			t.status = Status{ID: id, State: Unknown, Changed: now}
		}
		if existed {
			c.stopLocked(old)
		}
		c.targets[id] = t
		if !existed || old.status.State != t.status.State || old.status.Ejected != t.status.Ejected {
			c.publishLocked(t.status)
		}
		if c.runCtx != nil {
			c.startLocked(t)
		}
	}
	return nil
}

// Eject reports a failed dial to endpoint id (passive ejection): the
// endpoint turns Unhealthy at once, as if it had reached its unhealthy
// threshold, and stays Unhealthy until HealthyThreshold consecutive probes
// pass. If it was not already Unhealthy, its next probe runs at once. Eject
// reports whether id is a known target.
func (c *Checker) Eject(id, reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.targets[id]
	if !ok {
		return false
	}
	t.succ = 0
	t.fail = max(t.fail, t.cfg.UnhealthyThreshold)
	t.status.LastErr = "ejected: " + reason
	if t.status.State == Unhealthy {
		return true
	}
	prev := t.status.State
	t.status.State = Unhealthy
	t.status.Ejected = true
	t.status.Ejections++
	t.status.Changed = time.Now()
	t.history.add(Change{At: t.status.Changed, From: prev, To: Unhealthy, Reason: t.status.LastErr})
	c.publishLocked(t.status)
	c.log.Info("endpoint ejected", "endpoint", id, "from", prev, "reason", reason)
	select {
	case t.kick <- struct{}{}:
	default:
	}
	return true
}

// Snapshot returns the Status of every target, sorted by ID.
func (c *Checker) Snapshot() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Status, 0, len(c.targets))
	for _, t := range c.targets {
		out = append(out, t.status)
	}
	sortStatuses(out)
	return out
}

// History returns the last state changes of endpoint id (at most
// HistoryLen, oldest first), or nil for an unknown id. A reload that keeps
// the endpoint keeps its history.
func (c *Checker) History(id string) []Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.targets[id]
	if !ok {
		return nil
	}
	return t.history.list()
}

// startLocked starts t's probe loop under the running Run.
func (c *Checker) startLocked(t *target) {
	ctx, cancel := context.WithCancel(c.runCtx)
	t.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		c.loop(ctx, t)
	}()
}

// stopLocked stops t's probe loop, if running; it does not wait for it.
func (c *Checker) stopLocked(t *target) {
	if t.cancel != nil {
		t.cancel()
		t.cancel = nil
	}
}

// loop probes t until ctx is done.
func (c *Checker) loop(ctx context.Context, t *target) {
	timer := time.NewTimer(time.Duration(rand.Int64N(int64(t.cfg.Interval))))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-t.kick:
			timer.Stop()
		}
		start := time.Now()
		err := t.prober.Probe(ctx)
		latency := time.Since(start)
		if ctx.Err() != nil {
			return // stopping: the result says nothing about the endpoint
		}
		c.record(t, err, latency)
		timer.Reset(c.jittered(t.cfg.Interval))
	}
}

// jittered returns d stretched or shrunk by a random fraction of up to
// c.jitter.
func (c *Checker) jittered(d time.Duration) time.Duration {
	if c.jitter == 0 {
		return d
	}
	f := 1 + c.jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

// record applies one probe result to t's state.
func (c *Checker) record(t *target, err error, latency time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.targets[t.cfg.ID] != t {
		return // replaced or removed while probing
	}
	now := time.Now()
	st := &t.status
	st.Latency = latency
	st.LastProbe = now
	if err == nil {
		t.succ++
		t.fail = 0
		if st.State == Healthy {
			st.LastErr = ""
		}
	} else {
		t.fail++
		t.succ = 0
		st.LastErr = err.Error()
		c.log.Debug("probe failed", "endpoint", t.cfg.ID, "err", err)
	}
	prev := st.State
	next := prev
	switch prev {
	case Unknown:
		next = Unhealthy
		if err == nil {
			next = Healthy
		}
	case Healthy:
		if t.fail >= t.cfg.UnhealthyThreshold {
			next = Unhealthy
		}
	case Unhealthy:
		if t.succ >= t.cfg.HealthyThreshold {
			next = Healthy
		}
	}
	if next == prev {
		return
	}
	st.State = next
	st.Changed = now
	if next == Healthy {
		st.LastErr = ""
		st.Ejected = false
	}
	t.history.add(Change{At: now, From: prev, To: next, Reason: st.LastErr})
	c.publishLocked(*st)
	c.log.Info("endpoint state changed", "endpoint", t.cfg.ID, "from", prev, "to", next,
		"reason", st.LastErr, "latency", latency)
}

// sameCheck reports whether a and b probe the same thing the same way, so
// that a result of one stands for the other.
func sameCheck(a, b probe.Config) bool {
	a.Timeout, b.Timeout = 0, 0
	return a == b
}

func sortStatuses(s []Status) {
	slices.SortFunc(s, func(a, b Status) int { return strings.Compare(a.ID, b.ID) })
}
