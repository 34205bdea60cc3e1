package node

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

type fakeManager struct {
	interval time.Duration
	pings    atomic.Int64
}

func (f *fakeManager) Watchdog() time.Duration { return f.interval }
func (f *fakeManager) Alive() error            { f.pings.Add(1); return nil }

// TestWatchdogFollowsTheDataPath: the watchdog pings while every loop
// turns and stops as soon as one is stuck, however long the process runs.
func TestWatchdogFollowsTheDataPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := &fakeManager{interval: 600 * time.Millisecond}
		var stuck atomic.Bool
		fresh := func() time.Time { return time.Now() }
		loop := func() time.Time {
			if stuck.Load() {
				return time.Now().Add(-time.Hour)
			}
			return time.Now()
		}
		idle := func() time.Time { return time.Time{} } // nothing to watch
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- watchdog(ctx, m, slog.New(slog.DiscardHandler), fresh, loop, idle) }()

		time.Sleep(10 * m.interval)
		synctest.Wait()
		require.Equal(t, int64(40), m.pings.Load(), "four pings per interval while every loop turns")

		stuck.Store(true)
		before := m.pings.Load()
		time.Sleep(10 * m.interval)
		synctest.Wait()
		require.Equal(t, before, m.pings.Load(), "no ping while a loop is stuck")

		stuck.Store(false)
		time.Sleep(m.interval)
		synctest.Wait()
		require.Greater(t, m.pings.Load(), before, "pings resume when the loop turns again")
		cancel()
		require.NoError(t, <-done)
	})
}

func TestHeartbeat(t *testing.T) {
	require.Zero(t, heartbeat(0), "no watchdog, no wake-ups")
	require.Equal(t, 75*time.Millisecond, heartbeat(600*time.Millisecond))
}
