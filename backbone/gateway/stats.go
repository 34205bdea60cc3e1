package gateway

import (
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/anyedge/anyedge/backbone/wire"
)

// DialBuckets are the upper bounds, in seconds, of the dial latency
// histogram.
var DialBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// maxCode bounds the answer codes counted per endpoint.
const maxCode = 16

// epStats are one endpoint's counters. A flow keeps a pointer to the
// stats it started with, so that a reload never loses a decrement.
type epStats struct {
	activeTCP, activeUDP atomic.Int64
	dialsTCP, dialsUDP   atomic.Uint64
	failures             [maxCode]atomic.Uint64 // by answer code
	buckets              [13]atomic.Uint64      // by DialBuckets, then +Inf
	dialNanos            atomic.Int64
}

// observe counts one successful dial that took d.
func (s *epStats) observe(d time.Duration) {
	sec := d.Seconds()
	i, _ := slices.BinarySearch(DialBuckets, sec)
	s.buckets[i].Add(1)
	s.dialNanos.Add(int64(d))
}

func (s *epStats) fail(c wire.Code) {
	if int(c) < maxCode {
		s.failures[c].Add(1)
	}
}

// EndpointStats is a snapshot of one endpoint's traffic at the region.
type EndpointStats struct {
	ID string
	// ActiveTCP and ActiveUDP are the flows open now.
	ActiveTCP, ActiveUDP int64
	// DialsTCP counts TCP dials, DialsUDP UDP endpoint sockets opened.
	DialsTCP, DialsUDP uint64
	// Failures counts failed dials by answer code.
	Failures map[wire.Code]uint64
	// DialBuckets counts successful dials by latency: DialBucketCounts[i]
	// those not above DialBuckets[i] (cumulative), the last one all;
	// DialSeconds is their total duration.
	DialBucketCounts []uint64
	DialSeconds      float64
}

func (s *epStats) snapshot(id string) EndpointStats {
	out := EndpointStats{ID: id, ActiveTCP: s.activeTCP.Load(), ActiveUDP: s.activeUDP.Load(),
		DialsTCP: s.dialsTCP.Load(), DialsUDP: s.dialsUDP.Load(), Failures: map[wire.Code]uint64{},
		DialSeconds: time.Duration(s.dialNanos.Load()).Seconds()}
	for i := range s.failures {
		if n := s.failures[i].Load(); n > 0 {
			out.Failures[wire.Code(i)] = n
		}
	}
	var cum uint64
	for i := range s.buckets {
		cum += s.buckets[i].Load()
		out.DialBucketCounts = append(out.DialBucketCounts, cum)
	}
	return out
}

// statsOf returns the counters of endpoint id (made by SetEndpoints).
func (g *Gateway) statsOf(id string) *epStats {
	if s := (*g.stats.Load())[id]; s != nil {
		return s
	}
	return &epStats{} // not in the table: counted nowhere
}

// keepStats makes counters for every endpoint of eps, keeping those of
// endpoints that stay.
func (g *Gateway) keepStats(eps []Endpoint) {
	old := map[string]*epStats{}
	if p := g.stats.Load(); p != nil {
		old = *p
	}
	next := make(map[string]*epStats, len(eps))
	for _, e := range eps {
		if s := old[e.ID]; s != nil {
			next[e.ID] = s
		} else {
			next[e.ID] = &epStats{}
		}
	}
	g.stats.Store(&next)
}

// EndpointStats returns every endpoint's counters, sorted by ID.
func (g *Gateway) EndpointStats() []EndpointStats {
	m := *g.stats.Load()
	ids := slices.Sorted(maps.Keys(m))
	out := make([]EndpointStats, 0, len(ids))
	for _, id := range ids {
		out = append(out, m[id].snapshot(id))
	}
	return out
}
