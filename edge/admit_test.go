package edge_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/edge/acl"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/flow"
)

// dialFrom connects to addr from the local address src (any 127/8
// address reaches the loopback listener).
func dialFrom(t *testing.T, src, addr string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// served reports whether a connection from src gets an echo through the
// edge; a refused one is reset before any byte.
func served(t *testing.T, src, addr string) bool {
	t.Helper()
	c, err := dialFrom(t, src, addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	b := make([]byte, 4)
	_, err = io.ReadFull(c, b)
	return err == nil && string(b) == "ping"
}

// openEcho opens a flow from src that stays open, checked with one echo.
func openEcho(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	c, err := dialFrom(t, src, addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.True(t, echoes(c, "hello"), "the flow from %s is not served", src)
	return c
}

func echoes(c net.Conn, s string) bool {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, s); err != nil {
		return false
	}
	b := make([]byte, len(s))
	_, err := io.ReadFull(c, b)
	return err == nil && string(b) == s
}

// waitEnded waits for the meter to count n flows ended with r.
func waitEnded(t *testing.T, m *flow.Meter, r flow.Reason, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.Snapshot().Ended(r) < n {
		require.True(t, time.Now().Before(deadline), "%s: %d of %d", r, m.Snapshot().Ended(r), n)
		time.Sleep(time.Millisecond)
	}
}

func newMeter() *flow.Meter {
	return flow.NewMeter(flow.Listener{Key: "test/tcp", Accelerator: "test", Protocol: "tcp"}, nil)
}

// TestAdmitACL: a listener's allow and deny lists refuse clients at
// accept, counted as acl_denied; a new list applies to new flows only.
func TestAdmitACL(t *testing.T) {
	list, err := acl.Compile([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		[]netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")})
	require.NoError(t, err)
	m := newMeter()
	l := startLabWith(t, map[string]string{"echo-1": echoServer(t)}, labOpts{meter: m, admission: admit.Rules{ACL: list}})
	require.True(t, served(t, "127.0.0.1", l.edgeAddr))
	require.False(t, served(t, "127.0.0.9", l.edgeAddr), "a denied client got through")
	waitEnded(t, m, flow.ACLDenied, 1)

	open := openEcho(t, "127.0.0.1", l.edgeAddr)
	deny, err := acl.Compile(nil, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")})
	require.NoError(t, err)
	require.True(t, l.edge.SetAdmission("test/tcp", admit.Rules{ACL: deny}))
	require.False(t, served(t, "127.0.0.1", l.edgeAddr))
	waitEnded(t, m, flow.ACLDenied, 2)
	require.True(t, echoes(open, "still"), "a flow taken before the new list was cut")
	require.Zero(t, m.Snapshot().Ended(flow.ClientReset))
}

// TestConnectionFloodFromOneSource: one source opens connections as fast
// as it can; past its burst and its share it is refused at accept
// (rate_limited, source_limit), while a flow it opened before keeps
// working and another source's new flows are served.
func TestConnectionFloodFromOneSource(t *testing.T) {
	m := newMeter()
	l := startLabWith(t, map[string]string{"echo-1": echoServer(t)}, labOpts{meter: m,
		admission: admit.Rules{Rate: 20, Burst: 10, MaxFlowsPerSource: 3}})
	open := openEcho(t, "127.0.0.1", l.edgeAddr)
	var held []net.Conn
	for range 200 {
		c, err := dialFrom(t, "127.0.0.1", l.edgeAddr)
		if err == nil {
			held = append(held, c) // held open: the flood keeps its flows
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := m.Snapshot()
		if st.Ended(flow.RateLimited)+st.Ended(flow.SourceLimit) > 0 && st.Flows+int64(st.Ended(flow.RateLimited)+st.Ended(flow.SourceLimit)) >= 201 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the flood was not refused: %+v", st)
		time.Sleep(time.Millisecond)
	}
	st := m.Snapshot()
	require.LessOrEqual(t, st.Active, int64(3), "the source holds more than its share")
	require.Positive(t, st.Ended(flow.RateLimited))
	require.True(t, echoes(open, "still here"), "the flood cut an established flow")
	require.True(t, served(t, "127.0.1.1", l.edgeAddr), "another source is refused during the flood")
	for _, c := range held {
		_ = c.Close()
	}
}

// TestMaxConns: the edge's cap on connections refuses the one over it
// (conn_limit) and admits again once a flow ended.
func TestMaxConns(t *testing.T) {
	m := newMeter()
	l := startLabWith(t, map[string]string{"echo-1": echoServer(t)}, labOpts{meter: m, maxConns: 2})
	a := openEcho(t, "127.0.0.1", l.edgeAddr)
	openEcho(t, "127.0.0.2", l.edgeAddr)
	require.False(t, served(t, "127.0.0.3", l.edgeAddr))
	waitEnded(t, m, flow.ConnLimit, 1)
	require.NoError(t, a.(*net.TCPConn).CloseWrite())
	_, _ = io.ReadAll(a)
	deadline := time.Now().Add(10 * time.Second)
	for m.Snapshot().Active > 1 {
		require.True(t, time.Now().Before(deadline), "the closed flow did not end")
		time.Sleep(time.Millisecond)
	}
	require.True(t, served(t, "127.0.0.3", l.edgeAddr), "a flow that ended gave back no room")
}
