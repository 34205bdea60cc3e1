// Package liveness shows that the data path's loops still turn. Each loop
// blocks with a deadline that wakes it at least once per period and records
// when it last woke; the watchdog (control/node) asks for the oldest of
// those times and stays silent when a loop is stuck. A timer goroutine of
// its own would keep ticking while the data path is wedged; this cannot.
package liveness

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Set is the loops of one component. A nil *Set tracks nothing and costs
// nothing.
type Set struct {
	every time.Duration

	// mu guards loops.
	mu    sync.Mutex
	loops []*Loop
}

// NewSet returns a Set whose loops wake every period, or nil when every is
// not positive.
func NewSet(every time.Duration) *Set {
	if every <= 0 {
		return nil
	}
	return &Set{every: every}
}

// Loop is one loop's record.
type Loop struct {
	set   *Set
	every time.Duration
	arm   func(deadline time.Time) error
	at    atomic.Int64 // unix nanoseconds of the last wake-up
}

// Loop registers a loop whose blocking call arm gives a deadline (a
// listener's SetDeadline, a socket's SetReadDeadline), arms the first
// deadline and records now. It returns nil for a nil Set.
func (s *Set) Loop(arm func(deadline time.Time) error) *Loop {
	if s == nil {
		return nil
	}
	now := time.Now()
	l := &Loop{set: s, every: s.every, arm: arm}
	l.at.Store(now.UnixNano())
	_ = arm(now.Add(s.every))
	s.mu.Lock()
	s.loops = append(s.loops, l)
	s.mu.Unlock()
	return l
}

// Woke reports whether err is the loop's own wake-up (its deadline
// passed); if so it records the time and arms the next deadline, and the
// loop should simply go round again. It is false for a nil Loop.
func (l *Loop) Woke(err error) bool {
	if l == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	now := time.Now()
	l.at.Store(now.UnixNano())
	_ = l.arm(now.Add(l.every))
	return true
}

// Done unregisters a loop that ended on purpose (its listener was
// closed), so that it is not taken for a stuck one. Nil-safe.
func (l *Loop) Done() {
	if l == nil {
		return
	}
	l.set.mu.Lock()
	defer l.set.mu.Unlock()
	for i, x := range l.set.loops {
		if x == l {
			l.set.loops = append(l.set.loops[:i], l.set.loops[i+1:]...)
			return
		}
	}
}

// Oldest returns when the loop that has gone longest without waking last
// woke; the zero time when the set has no loops (or is nil).
func (s *Set) Oldest() time.Time {
	if s == nil {
		return time.Time{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest int64
	for _, l := range s.loops {
		if at := l.at.Load(); oldest == 0 || at < oldest {
			oldest = at
		}
	}
	if oldest == 0 {
		return time.Time{}
	}
	return time.Unix(0, oldest)
}
