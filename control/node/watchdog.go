package node

import (
	"context"
	"log/slog"
	"time"

	"github.com/anyedge/anyedge/internal/sdnotify"
)

// pinger is the service manager as the watchdog sees it
// (*sdnotify.Notifier).
type pinger interface {
	Watchdog() time.Duration
	Alive() error
}

var _ pinger = (*sdnotify.Notifier)(nil)

// heartbeat is how often the data path's loops wake up to show that they
// turn, given the service manager's watchdog interval: an eighth of it, so
// that a loop stuck for a quarter of the interval is noticed, and the
// watchdog then fires within the interval of the last good ping. Zero
// without a watchdog.
func heartbeat(watchdog time.Duration) time.Duration { return watchdog / 8 }

// watchdog pings the service manager every quarter of its interval, but
// only while every liveness source has turned within the last quarter
// (two heartbeats): the pings come from the data path's own progress, so
// a wedged accept or read loop, or a stopped process, stops them and the
// manager kills the edge, which closes its BGP sessions at once. A source
// that returns the zero time has nothing to watch.
func watchdog(ctx context.Context, n pinger, log *slog.Logger, sources ...func() time.Time) error {
	every := n.Watchdog() / 4
	tick := time.NewTicker(every)
	defer tick.Stop()
	stale := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			late := lateSource(now, every, sources)
			if late >= 0 {
				if !stale {
					log.Warn("watchdog: a data path loop is stuck; not pinging", "loop", late)
				}
				stale = true
				continue
			}
			if stale {
				log.Info("watchdog: every data path loop turns again")
			}
			stale = false
			if err := n.Alive(); err != nil {
				log.Warn("watchdog ping", "err", err)
			}
		}
	}
}

// lateSource returns the index of the first source that last turned
// longer than within before now, or -1 when every source is on time.
func lateSource(now time.Time, within time.Duration, sources []func() time.Time) int {
	for i, src := range sources {
		if at := src(); !at.IsZero() && now.Sub(at) > within {
			return i
		}
	}
	return -1
}

// notify sends one notification and logs a failure: a node serves
// whether or not its service manager hears of it.
func notify(log *slog.Logger, send func() error) {
	if err := send(); err != nil {
		log.Warn("service manager notification", "err", err)
	}
}
