// Package ratelog limits log records that happen per connection, per
// packet or per retry: each kind of record passes at most once per
// interval, and the next one to pass says how many were held back. A
// region outage then writes a few lines a minute, not one per client.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Every is the interval the data path uses: one line per kind of event
// every ten seconds is enough to see that something is wrong and what.
const Every = 10 * time.Second

// maxKeys bounds the kinds of records tracked at once; past it, expired
// windows are forgotten, and if none has expired the record is dropped and
// counted under the next record that passes.
const maxKeys = 1024

// Logger passes at most one record per key and interval to its
// slog.Logger. The zero value is not usable; build it with New. A nil
// *Logger drops everything.
type Logger struct {
	log   *slog.Logger
	every time.Duration

	// mu guards windows and overflow.
	mu       sync.Mutex
	windows  map[string]*window
	overflow int
}

type window struct {
	until   time.Time
	dropped int
}

// New returns a Logger that passes the first record of each key, then
// holds back the same key's records for every.
func New(log *slog.Logger, every time.Duration) *Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Logger{log: log, every: every, windows: make(map[string]*window)}
}

// Warn logs msg at warning level, keyed by msg.
func (l *Logger) Warn(msg string, args ...any) { l.Log(slog.LevelWarn, msg, msg, args...) }

// Info logs msg at info level, keyed by msg.
func (l *Logger) Info(msg string, args ...any) { l.Log(slog.LevelInfo, msg, msg, args...) }

// Log logs msg at level unless a record with the same key passed less than
// the interval ago. A record that passes after others were held back
// carries suppressed=N.
func (l *Logger) Log(level slog.Level, key, msg string, args ...any) {
	if l == nil || !l.log.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	l.mu.Lock()
	w := l.windows[key]
	if w == nil {
		if len(l.windows) >= maxKeys {
			l.forgetExpired(now)
		}
		if len(l.windows) >= maxKeys {
			l.overflow++
			l.mu.Unlock()
			return
		}
		w = &window{}
		l.windows[key] = w
	}
	if now.Before(w.until) {
		w.dropped++
		l.mu.Unlock()
		return
	}
	dropped := w.dropped + l.overflow
	w.until, w.dropped, l.overflow = now.Add(l.every), 0, 0
	l.mu.Unlock()
	if dropped > 0 {
		args = append(args, "suppressed", dropped)
	}
	l.log.Log(context.Background(), level, msg, args...)
}

// forgetExpired drops windows that have ended with nothing held back.
func (l *Logger) forgetExpired(now time.Time) {
	for k, w := range l.windows {
		if !now.Before(w.until) && w.dropped == 0 {
			delete(l.windows, k)
		}
	}
}
