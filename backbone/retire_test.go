package backbone_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
)

// TestPoolRetiresConnectionsWhosePathGotLonger: a pool dialled over a
// path of ~0 ms whose delay then rises to 50 ms replaces each connection
// once it is idle — dialling the replacement first, so the pool never has
// fewer live connections than its size — and the replacements' minimum
// RTT measures the new path. A flow open on a connection through it all
// keeps that connection (a busy connection is not retired) and still
// works; fresh flows work at every step.
func TestPoolRetiresConnectionsWhosePathGotLonger(t *testing.T) {
	const delay = 50 * time.Millisecond
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	path := startRelay(t, r.addr)
	rec := &logRecorder{}
	c, _ := runClient(t, backbone.ClientConfig{
		Region: regionName, Addr: path.addr(), Connections: 2,
		TLS: l.clientTLS(t, edgeName), Hello: backbone.Hello(edgeName, "test"), Logger: slog.New(rec),
		Retire: backbone.RetireConfig{After: time.Second, Samples: 2, HoldDown: time.Hour},
	})
	waitLive(t, c, 2)
	for _, sl := range c.Stats().Slots {
		require.Less(t, sl.MinRTT, delay/2, "the path is short at the dial")
	}

	// A flow stays open on one connection through the change.
	held := openFlow(t, c)
	echoOnce(t, held, "before")
	busy := -1
	for i, sl := range c.Stats().Slots {
		if sl.OpenStreams == 1 {
			busy = i
		}
	}
	require.NotEqual(t, -1, busy)

	path.delay.Store(int64(delay))
	// The pool never shrinks below its size while it replaces.
	replaced := func(slot int) func() bool {
		return func() bool {
			st := c.Stats()
			require.Equal(t, 2, st.Live, "the pool shrank while it replaced a connection")
			return st.Slots[slot].MinRTT >= delay
		}
	}
	idle := 1 - busy
	eventually(t, 30*time.Second, replaced(idle), "the idle connection was never replaced")
	st := c.Stats()
	require.Equal(t, int64(1), st.Retired[backbone.RetireRTTRise])
	require.Less(t, st.Slots[busy].MinRTT, delay/2, "the connection with an open flow was retired")
	echoOnce(t, held, "during")
	goodFlow(t, c) // on the replacement, the least loaded

	// Once its flow has ended, the other connection is replaced too.
	endFlow(t, held)
	eventually(t, 30*time.Second, replaced(busy), "the connection whose flow ended was never replaced")
	goodFlow(t, c)
	eventually(t, 10*time.Second, func() bool { return c.Stats().Draining == 0 }, "a retired connection never closed")
	st = c.Stats()
	require.Equal(t, int64(2), st.Retired[backbone.RetireRTTRise])
	require.Zero(t, st.Lost, "no connection was lost")
	for _, sl := range st.Slots {
		require.GreaterOrEqual(t, sl.MinRTT, delay)
	}
	logs := rec.find("retiring backbone connection: its RTT rose far above its minimum; a replacement dials")
	require.Len(t, logs, 2, "one log line per retirement")
	for _, lr := range logs {
		require.Equal(t, "rtt_rise", lr.attrs["reason"])
		require.NotEmpty(t, lr.attrs["min_rtt"])
		require.NotEmpty(t, lr.attrs["smoothed_rtt"])
	}
}

// TestRetiredConnectionDrains: a flow that opens on a connection after
// its retirement was decided, before the replacement is up, stays on it
// and keeps working after the replacement took the slot; the retired
// connection closes once that flow has ended, and not before.
func TestRetiredConnectionDrains(t *testing.T) {
	// A long path: the replacement needs two round trips (handshake, the
	// region's first answer) before it takes the slot, time enough to
	// open a flow on the retired connection.
	const delay = 200 * time.Millisecond
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	path := startRelay(t, r.addr)
	c, _ := runClient(t, backbone.ClientConfig{
		Region: regionName, Addr: path.addr(), Connections: 1,
		TLS: l.clientTLS(t, edgeName), Hello: backbone.Hello(edgeName, "test"),
		Retire: backbone.RetireConfig{After: time.Second, Samples: 2, HoldDown: time.Hour},
	})
	waitLive(t, c, 1)
	old := endFlow(t, openFlow(t, c))

	path.delay.Store(int64(delay))
	eventually(t, 30*time.Second, func() bool { return c.Stats().Retired[backbone.RetireRTTRise] == 1 },
		"the connection was never retired")
	held := openFlow(t, c)
	require.Same(t, old, held.Conn(), "the flow opened after the retirement went to the replacement: "+
		"it was up within two round trips of %v", delay)
	eventually(t, 30*time.Second, func() bool {
		st := c.Stats()
		require.Equal(t, 1, st.Live, "the pool shrank while it replaced its connection")
		return st.Slots[0].MinRTT >= delay
	}, "the replacement never took the slot")
	require.Equal(t, 1, c.Stats().Draining, "the retired connection closed with a flow open")
	echoOnce(t, held, "on the retired connection")
	fresh := openFlow(t, c)
	require.NotSame(t, old, fresh.Conn(), "a new flow went to the retired connection")
	echoOnce(t, fresh, "on the replacement")
	endFlow(t, fresh)

	endFlow(t, held)
	eventually(t, 10*time.Second, func() bool { return c.Stats().Draining == 0 }, "the drained connection never closed")
	require.Error(t, old.Context().Err(), "the retired connection is closed")
	require.Zero(t, c.Stats().Lost)
	goodFlow(t, c)
}
