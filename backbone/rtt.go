package backbone

import (
	"sync"
	"sync/atomic"
	"time"
)

// The routing RTT of a region: what the router orders regions by. A
// connection's smoothed RTT is a poor measure for that: on an idle pool
// the RTT samples come from the edge's probes (wire.MsgProbe, once a
// second), whose acknowledgement the peer delays by up to its
// max_ack_delay (25 ms), and on a loaded node
// every sample carries queueing delay (loopback pools measured 17 ms after
// a burst of connections, idle ones 70 ms; a loaded node 5.2 ms against
// 1.06 ms on an identical link). Two equally near regions would then swap
// places on noise, moving new flows back and forth.
//
// So the pool keeps the minimum of its connections' RTT samples over a
// sliding window (propagation delay shows as the minimum; queueing and
// delayed acknowledgements only add), and reports a value that moves only
// when that minimum has moved by more than a margin: max(RTTMarginAbs,
// RTTMarginPercent of the reported value). A region that got nearer shows
// at its next sample; one that got farther shows once the window has
// forgotten the old minimum.
const (
	// RTTWindow is how long an RTT sample counts towards the minimum.
	RTTWindow = 10 * time.Second
	// RTTMarginAbs and RTTMarginPercent are the hysteresis: the reported
	// RTT changes only when the windowed minimum differs from it by more
	// than both.
	RTTMarginAbs     = time.Millisecond
	RTTMarginPercent = 10

	rttBuckets = 10 // the window in buckets of RTTWindow/rttBuckets
)

// rttFilter turns RTT samples into the routing RTT. observe and reset
// take a lock (they run about once per second per connection); value is
// an atomic load for the data path.
type rttFilter struct {
	reported atomic.Int64 // nanoseconds; 0 until the first sample

	// mu guards buckets: a ring of per-bucket minimums, bucket i covering
	// the span that starts at buckets[i].start.
	mu      sync.Mutex
	buckets [rttBuckets]rttBucket
}

type rttBucket struct {
	start time.Time
	min   time.Duration
}

// observe records one RTT sample taken at now and updates the reported
// value.
func (f *rttFilter) observe(now time.Time, rtt time.Duration) {
	if rtt <= 0 {
		return
	}
	span := RTTWindow / rttBuckets
	start := now.Truncate(span)
	f.mu.Lock()
	defer f.mu.Unlock()
	b := &f.buckets[uint64(start.UnixNano()/int64(span))%rttBuckets]
	if !b.start.Equal(start) {
		*b = rttBucket{start: start, min: rtt}
	} else if rtt < b.min {
		b.min = rtt
	}
	var m time.Duration
	for _, b := range f.buckets {
		if b.min > 0 && now.Sub(b.start) < RTTWindow && (m == 0 || b.min < m) {
			m = b.min
		}
	}
	cur := time.Duration(f.reported.Load())
	if cur == 0 || moved(cur, m) {
		f.reported.Store(int64(m))
	}
}

// moved reports whether the windowed minimum m is far enough from the
// reported value cur to replace it.
func moved(cur, m time.Duration) bool {
	d := m - cur
	if d < 0 {
		d = -d
	}
	return d > RTTMarginAbs && d*100 > cur*RTTMarginPercent
}

// value returns the reported RTT; 0 before any sample.
func (f *rttFilter) value() time.Duration { return time.Duration(f.reported.Load()) }

// reset forgets every sample: the region became unreachable, and what it
// measured before says little about the path it comes back on.
func (f *rttFilter) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buckets = [rttBuckets]rttBucket{}
	f.reported.Store(0)
}
