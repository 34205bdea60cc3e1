package backbone

import (
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

func retireDefaults() *RetireConfig {
	var cfg RetireConfig
	cfg.setDefaults()
	return &cfg
}

// rttSample is a connection's RTT figures with a baseline of minimum.
func rttSample(minimum, smoothed, latest time.Duration) quic.ConnectionStats {
	return quic.ConnectionStats{MinRTT: minimum, SmoothedRTT: smoothed, LatestRTT: latest}
}

// TestRiseWatchSustainedRise: a connection dialled on a 1 ms path whose
// path then measures 51 ms is retired once it has been high for After and
// Samples, not before.
func TestRiseWatchSustainedRise(t *testing.T) {
	cfg := retireDefaults()
	clk := newFakeClock()
	w := riseWatch{cfg: cfg}
	high := rttSample(time.Millisecond, 50*time.Millisecond, 51*time.Millisecond)
	start := clk.t
	for !w.observe(clk.advance(time.Second), high, true) {
		require.Less(t, clk.t.Sub(start), time.Minute, "a sustained rise never retired")
	}
	require.GreaterOrEqual(t, clk.t.Sub(start), cfg.After, "retired before After")
	require.GreaterOrEqual(t, w.n, cfg.Samples, "retired on fewer than Samples samples")
}

// TestRiseWatchSpikes: what a healthy connection shows now and then
// never retires it — a spike of the latest sample (the smoothed RTT
// stays low), a burst of high samples broken by one low, and the
// probe's delayed acknowledgement on a short path (latest = minimum +
// 25 ms, which quic-go takes out of the smoothed RTT).
func TestRiseWatchSpikes(t *testing.T) {
	cfg := retireDefaults()
	for name, samples := range map[string]func(i int) quic.ConnectionStats{
		"latest spikes": func(i int) quic.ConnectionStats {
			if i%3 == 0 {
				return rttSample(time.Millisecond, 3*time.Millisecond, 80*time.Millisecond)
			}
			return rttSample(time.Millisecond, 2*time.Millisecond, time.Millisecond)
		},
		"bursts broken by a low sample": func(i int) quic.ConnectionStats {
			if i%(cfg.Samples) == 0 {
				return rttSample(time.Millisecond, 30*time.Millisecond, time.Millisecond)
			}
			return rttSample(time.Millisecond, 40*time.Millisecond, 45*time.Millisecond)
		},
		"delayed acknowledgements": func(int) quic.ConnectionStats {
			return rttSample(time.Millisecond, 2*time.Millisecond, 26*time.Millisecond)
		},
		"long path, queueing within the factor": func(i int) quic.ConnectionStats {
			return rttSample(100*time.Millisecond, 180*time.Millisecond, 190*time.Millisecond)
		},
	} {
		clk := newFakeClock()
		w := riseWatch{cfg: cfg}
		for i := range 600 {
			require.False(t, w.observe(clk.advance(time.Second), samples(i), true), "%s: retired at sample %d", name, i)
		}
	}
}

// TestRiseWatchBusyConnectionNotChurned: queueing under load lifts both
// figures of a healthy connection; samples taken while it carries a flow
// do not count and end the streak, so a connection busy all the time, or
// busy between idle moments shorter than After, is never retired.
func TestRiseWatchBusyConnectionNotChurned(t *testing.T) {
	cfg := retireDefaults()
	clk := newFakeClock()
	w := riseWatch{cfg: cfg}
	queued := rttSample(time.Millisecond, 120*time.Millisecond, 150*time.Millisecond)
	for i := range 600 {
		idle := i%5 == 4 // idle one second in five
		require.False(t, w.observe(clk.advance(time.Second), queued, idle), "retired a busy connection at sample %d", i)
	}
	// Once it stays idle and high, the rise is real: it is retired.
	start := clk.t
	for !w.observe(clk.advance(time.Second), queued, true) {
		require.Less(t, clk.t.Sub(start), time.Minute)
	}
	require.GreaterOrEqual(t, clk.t.Sub(start), cfg.After)
}

// TestRetirerHoldDownAndBackoff: a slot retires at most once per
// hold-down; while replacements find the path long too the hold-down
// doubles up to its cap, and one that measures the short path again puts
// it back to the base.
func TestRetirerHoldDownAndBackoff(t *testing.T) {
	cfg := retireDefaults()
	clk := newFakeClock()
	var r retirer
	require.True(t, r.allow(clk.t))

	r.retired(cfg, clk.t, time.Millisecond)
	require.False(t, r.allow(clk.t), "a retirement is pending until the replacement reports")
	require.False(t, r.allow(clk.t.Add(time.Hour)), "a retirement is pending until the replacement reports")

	// The replacement is long too (51 ms against 1 ms): the path is long,
	// the hold-down doubles.
	require.True(t, r.replaced(cfg, clk.t, 51*time.Millisecond))
	require.Equal(t, 2*cfg.HoldDown, r.hold)
	require.False(t, r.allow(clk.advance(2*cfg.HoldDown-time.Second)))
	require.True(t, r.allow(clk.advance(time.Second)))

	// Again and again: capped.
	for range 10 {
		r.retired(cfg, clk.t, time.Millisecond)
		require.True(t, r.replaced(cfg, clk.t, 51*time.Millisecond))
		clk.advance(r.hold)
	}
	require.Equal(t, cfg.HoldDownMax, r.hold)

	// A replacement that measures the short path: back to the base.
	r.retired(cfg, clk.t, time.Millisecond)
	require.False(t, r.replaced(cfg, clk.t, 2*time.Millisecond))
	require.Equal(t, cfg.HoldDown, r.hold)
	require.False(t, r.allow(clk.advance(cfg.HoldDown-time.Second)))
	require.True(t, r.allow(clk.advance(time.Second)))

	// A connection that takes a slot after a loss, with no retirement
	// pending, changes nothing.
	require.False(t, r.replaced(cfg, clk.t, 500*time.Millisecond))
	require.True(t, r.allow(clk.t))

	// A retired connection that died before its replacement: the
	// retirement is abandoned, the hold-down stays.
	r.retired(cfg, clk.t, time.Millisecond)
	r.abandoned()
	require.False(t, r.allow(clk.advance(cfg.HoldDown-time.Second)))
	require.True(t, r.allow(clk.advance(time.Second)))
}

// TestRetireThreshold: max(factor × minimum, minimum + RiseMin).
func TestRetireThreshold(t *testing.T) {
	cfg := retireDefaults()
	require.Equal(t, 21*time.Millisecond, cfg.threshold(time.Millisecond))
	require.Equal(t, 40*time.Millisecond, cfg.threshold(20*time.Millisecond))
	require.Equal(t, 400*time.Millisecond, cfg.threshold(200*time.Millisecond))
}
