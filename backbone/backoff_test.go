package backbone

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoffDoublesToCap(t *testing.T) {
	var got []time.Duration
	d := time.Duration(0)
	for range 8 {
		d = nextBackoff(d)
		got = append(got, d)
	}
	require.Equal(t, []time.Duration{
		200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond,
		3200 * time.Millisecond, 5 * time.Second, 5 * time.Second, 5 * time.Second,
	}, got)
}

func TestJitterSpreadsOverUpperHalf(t *testing.T) {
	for _, d := range []time.Duration{200 * time.Millisecond, maxBackoff} {
		seen := map[time.Duration]bool{}
		for range 200 {
			j := jitter(d)
			require.GreaterOrEqual(t, j, d/2)
			require.LessOrEqual(t, j, d)
			seen[j] = true
		}
		require.Greater(t, len(seen), 100, "jitter of %s is not random", d)
	}
}

func TestQUICIdleLeavesRoomForKeepAlive(t *testing.T) {
	for _, c := range []struct{ keepAlive, idle, wantIdle, wantKeepAlive time.Duration }{
		{0, 0, 2 * time.Second, time.Second},
		{time.Second, 3 * time.Second, 2 * time.Second, time.Second},
		{500 * time.Millisecond, 10 * time.Second, 9500 * time.Millisecond, 500 * time.Millisecond},
		{5 * time.Second, 3 * time.Second, 2 * time.Second, time.Second}, // keep-alive not below idle
	} {
		q := quicConfig(c.keepAlive, c.idle)
		require.Equal(t, c.wantIdle, q.MaxIdleTimeout)
		require.Equal(t, c.wantKeepAlive, q.KeepAlivePeriod)
		idle := c.idle
		if idle == 0 {
			idle = DefaultIdleTimeout
		}
		// quic-go pings every min(KeepAlivePeriod, MaxIdleTimeout/2).
		ping := min(q.KeepAlivePeriod, q.MaxIdleTimeout/2)
		require.LessOrEqual(t, ping+q.MaxIdleTimeout, idle, "dead-peer bound exceeds the idle timeout")
	}
}

func TestQlogDirWritesATracePerConnectionEnd(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(QlogDirEnv, dir)
	require.NotNil(t, quicConfig(0, 0).Tracer)
	t.Setenv(QlogDirEnv, "")
	require.Nil(t, quicConfig(0, 0).Tracer, "no qlog unless asked for")
}
