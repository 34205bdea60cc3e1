package ratelog

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newBuf() (*bytes.Buffer, *slog.Logger) {
	var b bytes.Buffer
	return &b, slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

func TestOnePerKeyAndInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, log := newBuf()
		l := New(log, time.Second)
		for i := range 100 {
			l.Warn("no route for flow", "client", i)
		}
		l.Info("another kind")
		require.Equal(t, 2, strings.Count(b.String(), "\n"), b.String())
		require.Contains(t, b.String(), `level=WARN msg="no route for flow" client=0`)

		time.Sleep(time.Second)
		l.Warn("no route for flow", "client", 100)
		require.Contains(t, b.String(), `client=100 suppressed=99`, "the next record says how many were held back")
		l.Warn("no route for flow", "client", 101)
		require.NotContains(t, b.String(), "client=101")
	})
}

func TestDisabledLevelCostsNothing(t *testing.T) {
	var b bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelError})), time.Second)
	l.Warn("x")
	require.Empty(t, b.String())
	require.Empty(t, l.windows, "a disabled level keeps no state")
	var nilLogger *Logger
	nilLogger.Warn("dropped")
}

func TestBoundedKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, log := newBuf()
		l := New(log, time.Second)
		for i := range maxKeys + 10 {
			l.Log(slog.LevelInfo, strconv.Itoa(i), "kind")
		}
		require.Len(t, l.windows, maxKeys)
		require.Equal(t, maxKeys, strings.Count(b.String(), "\n"))
		time.Sleep(time.Second)
		l.Log(slog.LevelInfo, "new", "kind")
		require.Contains(t, b.String(), "suppressed=10", "records dropped for want of room are counted")
		require.LessOrEqual(t, len(l.windows), maxKeys)
	})
}
