package backbone_test

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/splice"
	"github.com/anyedge/anyedge/backbone/wire"
)

func TestPoolConnectionsUseDistinctSockets(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	c := l.startClient(t, edgeName, r.addr, 2)
	waitLive(t, c, 2)
	eventually(t, 5*time.Second, func() bool { return len(r.rec.live()) == 2 }, "region never saw two connections")
	ports := map[string]bool{}
	for conn := range r.rec.live() {
		ports[conn.RemoteAddr().String()] = true
	}
	require.Len(t, ports, 2, "the two connections share a 5-tuple")
	goodFlow(t, c)
}

// streamsOn returns how many data streams each live connection carried.
func streamsOn(r *region) map[*quic.Conn]int { return r.rec.live() }

// grown returns the connection whose data stream count grew from before.
func grown(t *testing.T, before, after map[*quic.Conn]int) *quic.Conn {
	t.Helper()
	var got *quic.Conn
	for c, n := range after {
		if n != before[c] {
			require.Nil(t, got, "more than one connection grew")
			got = c
		}
	}
	require.NotNil(t, got, "no connection grew")
	return got
}

func TestPoolLeastLoaded(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	c := l.startClient(t, edgeName, r.addr, 2)
	waitLive(t, c, 2)
	eventually(t, 5*time.Second, func() bool { return len(r.rec.live()) == 2 }, "region never saw two connections")

	before := streamsOn(r)
	s1 := openFlow(t, c)
	a := grown(t, before, streamsOn(r))
	before = streamsOn(r)
	s2 := openFlow(t, c)
	b := grown(t, before, streamsOn(r))
	require.NotSame(t, a, b, "second flow went to the loaded connection")
	require.EqualValues(t, 2, c.Stats().OpenStreams)

	// Freeing s1 makes a the least loaded again.
	s1.Release()
	s1.CancelRead(wire.StreamReset)
	s1.CancelWrite(wire.StreamReset)
	before = streamsOn(r)
	s3 := openFlow(t, c)
	require.Same(t, a, grown(t, before, streamsOn(r)), "flow did not go to the least loaded connection")
	for _, s := range []backbone.Stream{s2, s3} {
		echoOnce(t, s, "x")
		s.Release()
		require.NoError(t, s.Close())
		_, _ = io.ReadAll(s)
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (user, edgeSide *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer ln.Close()
	user, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	require.NoError(t, err)
	edgeSide, err = ln.AcceptTCP()
	require.NoError(t, err)
	t.Cleanup(func() { _ = user.Close(); _ = edgeSide.Close() })
	return user, edgeSide
}

func TestPoolReplacesKilledConnectionAndResetsItsFlows(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	c := l.startClient(t, edgeName, r.addr, 2)
	waitLive(t, c, 2)
	r.rec.nextConn(t)
	r.rec.nextConn(t)

	// A user flow spliced onto the pool, as the edge does it.
	before := streamsOn(r)
	s := openFlow(t, c)
	victim := grown(t, before, streamsOn(r))
	user, edgeSide := tcpPair(t)
	joined := make(chan splice.Result, 1)
	go func() {
		joined <- splice.Join(edgeSide, s, 0)
		s.Release()
	}()
	echoOnce(t, user, "before")

	// The region kills the connection carrying the flow.
	killed := time.Now()
	require.NoError(t, victim.CloseWithError(0x42, "test kill"))

	// The user sees a reset, not a hang.
	_ = user.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := user.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ECONNRESET)
	require.True(t, (<-joined).Reset)

	// A replacement is dialled at once (no backoff after a live
	// connection died) and the pool is back to two.
	fresh := r.rec.nextConn(t)
	require.NotSame(t, victim, fresh)
	require.Less(t, time.Since(killed), time.Second, "replacement dial was not immediate")
	waitLive(t, c, 2)
	require.True(t, c.Reachable())
	goodFlow(t, c)
}

func TestOpenStreamNeverWaitsForDeadRegion(t *testing.T) {
	l := newLab(t)
	// Nothing answers at this address.
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	addr := pc.LocalAddr().String()
	require.NoError(t, pc.Close())
	c := l.startClient(t, edgeName, addr, 2)

	start := time.Now()
	_, err = c.OpenStream(context.Background())
	require.ErrorIs(t, err, backbone.ErrUnreachable)
	require.Less(t, time.Since(start), 100*time.Millisecond)
	require.False(t, c.Reachable())
	_, ok := c.RTT()
	require.False(t, ok)
}

func TestDeadPeerDetectedAndRecoveredWithResumption(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	r.gw.SetHealth([]wire.EndpointHealth{{ID: endpointID, Healthy: true}})
	rl := startRelay(t, r.addr)
	c := l.startClient(t, edgeName, rl.addr(), 2)
	waitLive(t, c, 2)
	// The slots dial at once, but the pool shares one session cache: a
	// slot that dials after the other's handshake has finished resumes.
	full := 0
	for range 2 {
		if !r.rec.nextConn(t).ConnectionState().TLS.DidResume {
			full++
		}
	}
	require.Positive(t, full, "the pool's first connection resumed a session it never had")
	eventually(t, 5*time.Second, func() bool { _, ok := c.Load(); return ok }, "no load report")
	healthy, known := c.EndpointHealthy(endpointID)
	require.True(t, healthy && known)

	// The region falls silent: no CONNECTION_CLOSE, nothing.
	rl.drop.Store(true)
	silent := time.Now()
	// The idle timeout (3 s) decides; how long it took on this machine is
	// logged, not asserted.
	eventually(t, 30*time.Second, func() bool { return !c.Reachable() }, "dead region never detected")
	t.Logf("dead peer detected after %s (idle timeout 3 s)", time.Since(silent).Round(time.Millisecond))
	_, known = c.EndpointHealthy(endpointID)
	require.False(t, known, "health of an unreachable region must be cleared")
	_, ok := c.Load()
	require.False(t, ok, "load of an unreachable region must be cleared")
	_, err := c.OpenStream(context.Background())
	require.ErrorIs(t, err, backbone.ErrUnreachable)

	// It comes back: the pool reconnects on its own and resumes TLS.
	rl.drop.Store(false)
	waitLive(t, c, 2)
	for range 2 {
		require.True(t, r.rec.nextConn(t).ConnectionState().TLS.DidResume, "reconnect did not resume the TLS session")
	}
	goodFlow(t, c)
}

func TestStats(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	c := l.startClient(t, edgeName, r.addr, 2)
	waitLive(t, c, 2)
	s := openFlow(t, c)
	defer s.Release()
	echoOnce(t, s, "rtt sample")

	st := c.Stats()
	require.Equal(t, 2, st.Live)
	require.Greater(t, st.SmoothedRTT, time.Duration(0))
	require.Less(t, st.SmoothedRTT, 500*time.Millisecond, "loopback RTT")
	require.GreaterOrEqual(t, st.LossRatio, 0.0)
	require.Less(t, st.LossRatio, 0.5)
	require.EqualValues(t, 1, st.OpenStreams)
	rtt, ok := c.RTT()
	require.True(t, ok)
	require.Greater(t, rtt, time.Duration(0))
	// The routing RTT is a minimum of samples: never above the smoothed
	// RTT by more than the hysteresis margin.
	require.LessOrEqual(t, rtt, st.SmoothedRTT+backbone.RTTMarginAbs)
	require.Equal(t, rtt, st.RoutingRTT)
	require.NoError(t, s.Close())
	_, _ = io.ReadAll(s)
}

func TestLoadReport(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{gw: gateway.Config{LoadInterval: 20 * time.Millisecond}})
	c := l.startClient(t, edgeName, r.addr, 1)
	waitLive(t, c, 1)
	loadIs := func(n int64) func() bool {
		return func() bool { l, ok := c.Load(); return ok && l.ActiveFlows == n }
	}
	eventually(t, 5*time.Second, loadIs(0), "idle region does not report zero flows")
	s := openFlow(t, c)
	echoOnce(t, s, "x")
	eventually(t, 5*time.Second, loadIs(1), "region does not report its flow")
	s.Release()
	require.NoError(t, s.Close())
	_, _ = io.ReadAll(s)
	eventually(t, 5*time.Second, loadIs(0), "region still reports a closed flow")
}

func TestStreamLimitBlocksOpenerOnly(t *testing.T) {
	l := newLab(t)
	// Four streams per connection: the control stream and three flows.
	r := l.startRegion(t, regionOpts{maxStreams: 4})
	greedy := l.startClient(t, edgeName, r.addr, 1)
	waitLive(t, greedy, 1)
	var flows []backbone.Stream
	for range 3 {
		flows = append(flows, openFlow(t, greedy))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err := greedy.OpenStream(ctx)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "opening past MAX_STREAMS must wait for credit")

	// Another edge connection is not affected.
	other := l.startClient(t, edgeName, r.addr, 1)
	waitLive(t, other, 1)
	goodFlow(t, other)

	// Ending a flow returns credit to the greedy one.
	f := flows[0]
	require.NoError(t, f.Close())
	_, _ = io.ReadAll(f)
	f.Release()
	goodFlow(t, greedy)
	for _, f := range flows[1:] {
		require.NoError(t, f.Close())
		_, _ = io.ReadAll(f)
		f.Release()
	}
}

func TestStatsSeeLoss(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	rl := startRelay(t, r.addr)
	c := l.startClient(t, edgeName, rl.addr(), 1)
	waitLive(t, c, 1)
	rl.dropEvery.Store(10)
	s := openFlow(t, c)
	defer s.Release()
	payload := make([]byte, 1<<20)
	done := make(chan error, 1)
	go func() {
		_, err := s.Write(payload)
		if err == nil {
			err = s.Close()
		}
		done <- err
	}()
	got, err := io.ReadAll(s)
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.Len(t, got, len(payload), "QUIC recovers every lost packet")
	st := c.Stats()
	t.Logf("loss ratio %.3f, rtt %s", st.LossRatio, st.SmoothedRTT)
	require.Greater(t, st.LossRatio, 0.0, "10%% loss towards the region went unnoticed")
	require.Less(t, st.LossRatio, 0.5)
}
