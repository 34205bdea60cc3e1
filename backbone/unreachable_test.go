package backbone_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/wire"
)

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	// mu guards recs.
	mu   sync.Mutex
	recs []logRecord
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	lr := logRecord{level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
	rec.Attrs(func(a slog.Attr) bool {
		lr.attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, lr)
	r.mu.Unlock()
	return nil
}

// find returns the records with msg.
func (r *logRecorder) find(msg string) []logRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []logRecord
	for _, lr := range r.recs {
		if lr.msg == msg {
			out = append(out, lr)
		}
	}
	return out
}

// above returns the records above level, formatted.
func (r *logRecorder) above(level slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, lr := range r.recs {
		if lr.level > level {
			out = append(out, fmt.Sprintf("%s %s %v", lr.level, lr.msg, lr.attrs))
		}
	}
	return out
}

// closedPort returns a loopback UDP address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := pc.LocalAddr().String()
	require.NoError(t, pc.Close())
	return addr
}

// TestDialToClosedPortFailsAtOnce: a region whose port is closed answers
// the first handshake packet with an ICMP port-unreachable; the dial fails
// on it (not after the 2 s handshake timeout), only the first failure of a
// run is logged as a warning, and the pool connects as soon as the region
// listens.
func TestDialToClosedPortFailsAtOnce(t *testing.T) {
	l := newLab(t)
	addr := closedPort(t)
	rec := &logRecorder{}
	c, _ := l.startClientLog(t, edgeName, addr, 1, slog.New(rec))
	eventually(t, 10*time.Second, func() bool { return len(rec.find("backbone dial failed")) >= 3 }, "no dial failures")
	fails := rec.find("backbone dial failed")
	for _, f := range fails {
		require.Contains(t, f.attrs["err"], "port unreachable", "the dial failed on the ICMP error, not a timeout")
	}
	require.Equal(t, slog.LevelWarn, fails[0].level)
	for _, f := range fails[1:] {
		require.Equal(t, slog.LevelDebug, f.level, "a region that stays down is logged once, not per retry")
	}

	l.startRegion(t, regionOpts{listen: addr})
	waitLive(t, c, 1)
	ok := rec.find("backbone dial succeeded")
	require.Len(t, ok, 1)
	require.NotEqual(t, "0", ok[0].attrs["after_failures"])
}

// TestRegionStopLogsNoWarning: a region that stops closes its connections
// with a named reason; the edge logs that at info, and an edge that stops
// logs nothing above info either.
func TestRegionStopLogsNoWarning(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	rec := &logRecorder{}
	c, stop := l.startClientLog(t, edgeName, r.addr, 2, slog.New(rec))
	waitLive(t, c, 2)
	goodFlow(t, c)

	require.NoError(t, r.srv.Close())
	eventually(t, 10*time.Second, func() bool { return len(rec.find("backbone connection closed by the region")) >= 2 },
		"the edge did not see the region's shutdown on both connections")
	for _, lr := range rec.find("backbone connection closed by the region") {
		require.Contains(t, lr.attrs["err"], "region shutting down", "the close carries its reason")
	}
	eventually(t, 10*time.Second, func() bool { return len(rec.above(slog.LevelInfo)) >= 2 }, "no redial on both connections")
	stop()
	var unexpected []string
	for _, s := range rec.above(slog.LevelInfo) {
		if !strings.Contains(s, "backbone dial failed") {
			unexpected = append(unexpected, s)
		}
	}
	require.Empty(t, unexpected, "a clean stop of either end logs no warning")
	require.Len(t, rec.above(slog.LevelInfo), 2, "one warning per connection")
}

// TestStreamCancelledBeforeHeader: an edge that gives a stream up before
// its header (a hedge's loser) gets a reset, not a bad-header refusal, and
// the region neither counts nor warns about it.
func TestStreamCancelledBeforeHeader(t *testing.T) {
	l := newLab(t)
	rec := &logRecorder{}
	r := l.startRegion(t, regionOpts{gw: gateway.Config{Logger: slog.New(rec)}})
	c := l.startClient(t, edgeName, r.addr, 1)
	waitLive(t, c, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.OpenStream(ctx)
	require.NoError(t, err)
	defer s.Release()
	s.CancelWrite(wire.StreamReset)
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := s.Read(make([]byte, 1))
	require.Zero(t, n, "no answer code for a stream without a header")
	var se *quic.StreamError
	require.ErrorAs(t, err, &se)
	require.True(t, se.Remote)
	require.Equal(t, wire.StreamReset, se.ErrorCode)
	require.Zero(t, r.metrics.StreamsRefused()[wire.CodeBadHeader])
	require.Empty(t, rec.above(slog.LevelInfo))
	goodFlow(t, c)
}
