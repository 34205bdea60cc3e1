package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anyedge/anyedge/healthcheck/probe"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeProber returns the results a test feeds it, one per probe, and notes
// when each probe started.
type fakeProber struct {
	results chan error

	mu     sync.Mutex
	starts []time.Time
}

func (f *fakeProber) Probe(ctx context.Context) error {
	f.mu.Lock()
	f.starts = append(f.starts, time.Now())
	f.mu.Unlock()
	select {
	case err := <-f.results:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeProber) lastStart() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts[len(f.starts)-1]
}

// fakes hands out one fakeProber per probe address. Create it inside the
// synctest bubble.
type fakes map[string]*fakeProber

func (fs fakes) newProber(cfg probe.Config) (probe.Prober, error) {
	if cfg.Address == "bad" {
		return nil, errors.New("bad address")
	}
	f, ok := fs[cfg.Address]
	if !ok {
		f = &fakeProber{results: make(chan error)}
		fs[cfg.Address] = f
	}
	return f, nil
}

// step feeds one result to the prober of addr, lets the checker record it
// and returns the resulting Status of id.
func step(t *testing.T, c *Checker, fs fakes, id, addr string, pass bool) Status {
	t.Helper()
	var err error
	if !pass {
		err = errors.New("probe failed")
	}
	fs[addr].results <- err
	synctest.Wait()
	return status(t, c, id)
}

func status(t *testing.T, c *Checker, id string) Status {
	t.Helper()
	for _, st := range c.Snapshot() {
		if st.ID == id {
			return st
		}
	}
	t.Fatalf("no status for %q", id)
	return Status{}
}

// start runs c until the test ends.
func start(t *testing.T, c *Checker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	synctest.Wait()
}

func tgt(id string, healthy, unhealthy int) Target {
	return Target{
		ID:                 id,
		Probe:              probe.Config{Address: id},
		Interval:           time.Second,
		HealthyThreshold:   healthy,
		UnhealthyThreshold: unhealthy,
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Unknown: "unknown", Healthy: "healthy", Unhealthy: "unhealthy", 7: "state(7)"} {
		require.Equal(t, want, s.String())
	}
	require.True(t, Unknown.Routable())
	require.True(t, Healthy.Routable())
	require.False(t, Unhealthy.Routable())
}

func TestThresholds(t *testing.T) {
	const (
		H = Healthy
		U = Unhealthy
	)
	for _, tc := range []struct {
		name               string
		healthy, unhealthy int
		results            string // p = pass, f = fail
		want               []State
	}{
		{"first pass decides", 3, 3, "p", []State{H}},
		{"first fail decides", 3, 3, "f", []State{U}},
		{"unhealthy threshold", 3, 2, "pff", []State{H, H, U}},
		{"failures must be consecutive", 3, 2, "pfpfpff", []State{H, H, H, H, H, H, U}},
		{"healthy threshold", 3, 2, "fppp", []State{U, U, U, H}},
		{"successes must be consecutive", 3, 2, "fppfppp", []State{U, U, U, U, U, U, H}},
		{"thresholds of one flap", 1, 1, "pfpf", []State{H, U, H, U}},
		{"defaults are three", 0, 0, "pfffppp", []State{H, H, H, U, U, U, H}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fs := fakes{}
				c, err := New([]Target{tgt("a", tc.healthy, tc.unhealthy)}, Options{NewProber: fs.newProber})
				require.NoError(t, err)
				require.Equal(t, Unknown, status(t, c, "a").State)
				start(t, c)
				for i, r := range tc.results {
					st := step(t, c, fs, "a", "a", r == 'p')
					require.Equal(t, tc.want[i], st.State, "after result %d (%c)", i, r)
					if st.State == Healthy && r == 'p' {
						require.Empty(t, st.LastErr)
					} else {
						require.Equal(t, "probe failed", st.LastErr)
					}
					require.Equal(t, time.Now(), st.LastProbe)
				}
			})
		})
	}
}

func TestChangedTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes{}
		c, err := New([]Target{tgt("a", 1, 2)}, Options{NewProber: fs.newProber})
		require.NoError(t, err)
		start(t, c)
		st := step(t, c, fs, "a", "a", true)
		changed := st.Changed
		require.Equal(t, time.Now(), changed)
		st = step(t, c, fs, "a", "a", false)
		require.Equal(t, Healthy, st.State)
		require.Equal(t, changed, st.Changed, "no state change, no new Changed time")
		require.True(t, st.LastProbe.After(changed))
	})
}

func TestEject(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes{}
		c, err := New([]Target{tgt("a", 2, 3), tgt("b", 2, 3)}, Options{NewProber: fs.newProber})
		require.NoError(t, err)
		start(t, c)

		require.False(t, c.Eject("nope", "dial failed"))

		// Unknown → Unhealthy at once.
		require.True(t, c.Eject("b", "dial failed"))
		require.Equal(t, Unhealthy, status(t, c, "b").State)

		require.Equal(t, Healthy, step(t, c, fs, "a", "a", true).State)
		ejectedAt := time.Now()
		require.True(t, c.Eject("a", "connect: connection refused"))
		st := status(t, c, "a")
		require.Equal(t, Unhealthy, st.State)
		require.True(t, st.Ejected)
		require.Equal(t, "ejected: connect: connection refused", st.LastErr)
		require.Equal(t, ejectedAt, st.Changed)

		// The ejection made the next probe run at once.
		st = step(t, c, fs, "a", "a", true)
		require.Equal(t, ejectedAt, fs["a"].lastStart())
		require.Equal(t, Unhealthy, st.State)

		// Another ejection while Unhealthy restarts the count of successes.
		require.True(t, c.Eject("a", "again"))
		require.Equal(t, Unhealthy, step(t, c, fs, "a", "a", true).State)
		require.True(t, fs["a"].lastStart().After(ejectedAt), "no extra immediate probe when already unhealthy")
		st = step(t, c, fs, "a", "a", true)
		require.Equal(t, Healthy, st.State)
		require.False(t, st.Ejected)
		require.Empty(t, st.LastErr)
	})
}

func TestJitter(t *testing.T) {
	const interval = 10 * time.Second
	for _, tc := range []struct {
		name   string
		jitter float64
		frac   float64 // expected bound on each interval's deviation
	}{
		{"default", 0, DefaultJitter},
		{"wide", 0.5, 0.5},
		{"none", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fs := fakes{}
				tg := Target{ID: "a", Probe: probe.Config{Address: "a"}, Interval: interval}
				c, err := New([]Target{tg}, Options{NewProber: fs.newProber, Jitter: tc.jitter})
				require.NoError(t, err)
				begin := time.Now()
				start(t, c)
				const n = 50
				for range n {
					fs["a"].results <- nil
				}
				synctest.Wait()
				f := fs["a"]
				f.mu.Lock()
				starts := append([]time.Time(nil), f.starts...)
				f.mu.Unlock()
				require.GreaterOrEqual(t, len(starts), n)

				first := starts[0].Sub(begin)
				require.GreaterOrEqual(t, first, time.Duration(0))
				require.Less(t, first, interval, "initial offset within one interval")

				lo := time.Duration(float64(interval) * (1 - tc.frac))
				hi := time.Duration(float64(interval) * (1 + tc.frac))
				distinct := map[time.Duration]bool{}
				for i := 1; i < n; i++ {
					d := starts[i].Sub(starts[i-1])
					require.GreaterOrEqual(t, d, lo, "interval %d", i)
					require.LessOrEqual(t, d, hi, "interval %d", i)
					distinct[d] = true
				}
				if tc.frac > 0 {
					require.Greater(t, len(distinct), n/2, "intervals vary")
				} else {
					require.Len(t, distinct, 1)
				}
			})
		})
	}
}

func TestInitialOffsetsSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes{}
		var targets []Target
		for i := range 20 {
			targets = append(targets, tgt(fmt.Sprintf("t%02d", i), 1, 1))
		}
		c, err := New(targets, Options{NewProber: fs.newProber})
		require.NoError(t, err)
		start(t, c)
		time.Sleep(time.Second) // fake time: every first probe has started
		synctest.Wait()
		firsts := map[time.Time]bool{}
		for _, f := range fs {
			firsts[f.lastStart()] = true
		}
		require.Greater(t, len(firsts), 10, "first probes do not fire in lockstep")
	})
}

func TestSubscription(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes{}
		c, err := New([]Target{tgt("b", 1, 1), tgt("a", 1, 1)}, Options{NewProber: fs.newProber})
		require.NoError(t, err)
		sub := c.Subscribe()
		t.Cleanup(sub.Close)

		// A new subscription starts with the full view.
		<-sub.Ready()
		got := sub.Changes()
		require.Len(t, got, 2)
		require.Equal(t, "a", got[0].ID)
		require.Equal(t, "b", got[1].ID)
		require.Equal(t, Unknown, got[0].State)
		require.Nil(t, sub.Changes())

		start(t, c)
		step(t, c, fs, "a", "a", true)
		<-sub.Ready()
		got = sub.Changes()
		require.Len(t, got, 1)
		require.Equal(t, Healthy, got[0].State)

		// A subscriber that does not read never blocks probing; it sees the
		// latest state of each endpoint.
		for range 10 {
			step(t, c, fs, "a", "a", false)
			step(t, c, fs, "a", "a", true)
		}
		step(t, c, fs, "b", "b", false)
		require.Len(t, sub.Ready(), 1)
		<-sub.Ready()
		got = sub.Changes()
		require.Len(t, got, 2)
		require.Equal(t, Healthy, got[0].State)
		require.Equal(t, Unhealthy, got[1].State)

		// Probe results that change nothing are not published.
		step(t, c, fs, "b", "b", false)
		require.Len(t, sub.Ready(), 0)

		// Ejections are published.
		c.Eject("a", "dial failed")
		<-sub.Ready()
		got = sub.Changes()
		require.Len(t, got, 1)
		require.True(t, got[0].Ejected)

		sub.Close()
		sub.Close()
		step(t, c, fs, "a", "a", true)
		require.Nil(t, sub.Changes())
	})
}

func TestUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes{}
		c, err := New([]Target{tgt("a", 1, 1), tgt("b", 1, 1), tgt("d", 1, 1)}, Options{NewProber: fs.newProber})
		require.NoError(t, err)
		start(t, c)
		for _, id := range []string{"a", "b", "d"} {
			require.Equal(t, Healthy, step(t, c, fs, id, id, true).State)
		}
		sub := c.Subscribe()
		t.Cleanup(sub.Close)
		sub.Changes()

		slower := tgt("b", 1, 4)
		slower.Interval = 5 * time.Second
		require.NoError(t, c.Update([]Target{tgt("a", 1, 1), slower, tgt("c", 1, 1)}))
		synctest.Wait()

		snap := c.Snapshot()
		require.Len(t, snap, 3)
		require.Equal(t, []string{"a", "b", "c"}, []string{snap[0].ID, snap[1].ID, snap[2].ID})
		require.Equal(t, []State{Healthy, Healthy, Unknown}, []State{snap[0].State, snap[1].State, snap[2].State})
		got := sub.Changes()
		require.Len(t, got, 2, "added c, removed d; a and b unchanged")
		require.Equal(t, "c", got[0].ID)
		require.Equal(t, Unknown, got[0].State)
		require.Equal(t, "d", got[1].ID)
		require.True(t, got[1].Removed)
		require.False(t, c.Eject("d", "gone"))

		// b runs with its new thresholds.
		require.Equal(t, Healthy, step(t, c, fs, "b", "b", false).State)
		require.Equal(t, Healthy, step(t, c, fs, "b", "b", false).State)

		// A changed probe starts again from Unknown.
		moved := tgt("a", 1, 1)
		moved.Probe.Address = "a2"
		require.NoError(t, c.Update([]Target{moved, slower, tgt("c", 1, 1)}))
		require.Equal(t, Unknown, status(t, c, "a").State)
		require.Equal(t, Unhealthy, step(t, c, fs, "a", "a2", false).State)

		// An invalid update changes nothing.
		for _, bad := range [][]Target{
			{tgt("x", 1, 1), tgt("x", 1, 1)},
			{{ID: ""}},
			{{ID: "y", Interval: -1}},
			{{ID: "y", Probe: probe.Config{Address: "bad"}}},
		} {
			require.Error(t, c.Update(bad))
		}
		require.Len(t, c.Snapshot(), 3)
	})
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(nil, Options{})
		require.NoError(t, err)
		start(t, c)
		require.Error(t, c.Run(context.Background()))
	})
}

func TestNewErrors(t *testing.T) {
	_, err := New([]Target{{ID: "a", Probe: probe.Config{Protocol: "icmp", Address: "127.0.0.1:1"}}}, Options{})
	require.ErrorContains(t, err, `target "a"`)
	_, err = New([]Target{{ID: "a", Probe: probe.Config{Address: "x:1"}}, {ID: "a", Probe: probe.Config{Address: "x:1"}}}, Options{})
	require.ErrorContains(t, err, "duplicate")
}

// TestHistory: every state change is kept with its time, states and reason,
// the last HistoryLen of them, oldest first, across a reload that keeps the
// endpoint.
func TestHistory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs := fakes{}
		c, err := New([]Target{tgt("a", 1, 1)}, Options{NewProber: fs.newProber})
		require.NoError(t, err)
		require.Empty(t, c.History("a"))
		require.Nil(t, c.History("nope"))
		start(t, c)

		step(t, c, fs, "a", "a", true)
		passedAt := time.Now()
		time.Sleep(time.Second) // synctest: virtual time, to tell the changes apart
		step(t, c, fs, "a", "a", false)
		require.Equal(t, []Change{
			{At: passedAt, From: Unknown, To: Healthy},
			{At: time.Now(), From: Healthy, To: Unhealthy, Reason: "probe failed"},
		}, c.History("a"))
		step(t, c, fs, "a", "a", true)
		require.True(t, c.Eject("a", "dial refused"))
		h := c.History("a")
		require.Equal(t, Change{At: time.Now(), From: Healthy, To: Unhealthy, Reason: "ejected: dial refused"}, h[len(h)-1])

		// Flap well past the ring's size: the last HistoryLen stay, in order.
		for range HistoryLen {
			step(t, c, fs, "a", "a", true)
			step(t, c, fs, "a", "a", false)
		}
		h = c.History("a")
		require.Len(t, h, HistoryLen)
		for i, ch := range h {
			if i > 0 {
				require.Equal(t, h[i-1].To, ch.From, "change %d follows the one before", i)
				require.False(t, ch.At.Before(h[i-1].At))
			}
		}
		require.Equal(t, Unhealthy, h[len(h)-1].To)

		// A reload with other timing keeps the history; another check
		// records the reset to Unknown.
		slow := tgt("a", 1, 1)
		slow.Interval = 2 * time.Second
		require.NoError(t, c.Update([]Target{slow}))
		require.Equal(t, h, c.History("a"))
		other := tgt("a", 1, 1)
		other.Probe.Address = "b"
		require.NoError(t, c.Update([]Target{other}))
		h2 := c.History("a")
		require.Equal(t, Change{At: time.Now(), From: Unhealthy, To: Unknown, Reason: "health check changed"}, h2[len(h2)-1])
	})
}
