package backbone

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is the time of the samples in these tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) advance(d time.Duration) time.Time { c.t = c.t.Add(d); return c.t }

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)} }

// TestRTTFilterNoise: samples that carry queueing and delayed
// acknowledgements on top of the path's delay (what an idle or loaded
// pool measures) leave the routing RTT at the path's minimum.
func TestRTTFilterNoise(t *testing.T) {
	clk := newFakeClock()
	var f rttFilter
	require.Zero(t, f.value())
	rng := rand.New(rand.NewPCG(1, 2))
	f.observe(clk.t, 20*time.Millisecond)
	for range 600 { // 10 minutes, one sample a second
		noise := time.Duration(rng.Int64N(int64(time.Millisecond))) // the path's jitter
		switch rng.IntN(10) {
		case 0:
			noise += 25 * time.Millisecond // a delayed ACK
		case 1, 2:
			noise += time.Duration(rng.Int64N(int64(30 * time.Millisecond))) // queueing
		}
		f.observe(clk.advance(time.Second), 20*time.Millisecond+noise)
		require.Equal(t, 20*time.Millisecond, f.value())
	}
}

// TestRTTFilterEqualRegionsDoNotSwap: two regions on identical paths,
// each measured with independent noise (one of them on a loaded node),
// keep their order for as long as the test runs: the router would
// otherwise move new flows back and forth between them.
func TestRTTFilterEqualRegionsDoNotSwap(t *testing.T) {
	for _, base := range []time.Duration{100 * time.Microsecond, time.Millisecond, 40 * time.Millisecond} {
		clk := newFakeClock()
		var a, b rttFilter
		rng := rand.New(rand.NewPCG(3, uint64(base)))
		var rawA, rawB time.Duration // the last raw samples
		sample := func(f *rttFilter, loaded bool) {
			// Two connections, each sampled once a second.
			for range 2 {
				n := time.Duration(rng.Int64N(int64(base / 5))) // jitter of the path
				if loaded {
					n += time.Duration(rng.Int64N(int64(5 * time.Millisecond)))
				}
				f.observe(clk.t, base+n)
				if f == &a {
					rawA = base + n
				} else {
					rawB = base + n
				}
			}
		}
		sample(&a, false)
		sample(&b, false)
		first := a.value() <= b.value()
		rawSwaps := 0
		rawFirst := rawA <= rawB
		for i := range 3600 {
			clk.advance(time.Second)
			sample(&a, i%7 == 0)
			sample(&b, i%3 == 0)
			require.Equal(t, first, a.value() <= b.value(), "order swapped at %v (base %v): a %v, b %v",
				i, base, a.value(), b.value())
			if rawA <= rawB != rawFirst {
				rawSwaps++
				rawFirst = !rawFirst
			}
		}
		// The raw samples, as the router used to order by, swap all the time.
		require.Greater(t, rawSwaps, 100, "base %v", base)
	}
}

// TestRTTFilterMoves: a region that got nearer shows at once; one that got
// farther shows once the window has forgotten the old minimum, and a
// change within the margin does not show at all.
func TestRTTFilterMoves(t *testing.T) {
	clk := newFakeClock()
	var f rttFilter
	for range 20 {
		f.observe(clk.advance(time.Second), 50*time.Millisecond)
	}
	require.Equal(t, 50*time.Millisecond, f.value())

	// Within the margin (10 % of 50 ms): never shows.
	for range 30 {
		f.observe(clk.advance(time.Second), 54*time.Millisecond)
	}
	require.Equal(t, 50*time.Millisecond, f.value())

	// Farther by more than the margin: shows only after the window.
	start := clk.t
	for f.value() == 50*time.Millisecond {
		f.observe(clk.advance(time.Second), 80*time.Millisecond)
		require.Less(t, clk.t.Sub(start), 2*RTTWindow, "a longer path never showed")
	}
	require.Equal(t, 80*time.Millisecond, f.value())
	require.GreaterOrEqual(t, clk.t.Sub(start), RTTWindow-RTTWindow/rttBuckets)

	// Nearer: at the next sample.
	f.observe(clk.advance(time.Second), 30*time.Millisecond)
	require.Equal(t, 30*time.Millisecond, f.value())

	// Small absolute changes on a short path stay within RTTMarginAbs.
	var g rttFilter
	g.observe(clk.advance(time.Second), 200*time.Microsecond)
	g.observe(clk.advance(time.Second), 900*time.Microsecond)
	for range 30 {
		g.observe(clk.advance(time.Second), 900*time.Microsecond)
	}
	require.Equal(t, 200*time.Microsecond, g.value())

	g.reset()
	require.Zero(t, g.value())
	g.observe(clk.advance(time.Second), 900*time.Microsecond)
	require.Equal(t, 900*time.Microsecond, g.value())
}
