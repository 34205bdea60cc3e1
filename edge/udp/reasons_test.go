package udp_test

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/edge/flow"
)

// records is a flow.Sink that keeps every record.
type records struct {
	mu   sync.Mutex
	recs []flow.Record
}

func (r *records) Flow(rec flow.Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

func (r *records) all() []flow.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]flow.Record(nil), r.recs...)
}

// wait returns the records once there are n, waiting up to 10 s.
func (r *records) wait(t *testing.T, n int) []flow.Record {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool { return len(r.all()) >= n }, "flow records missing")
	recs := r.all()
	require.Len(t, recs, n, "one record per flow: %+v", recs)
	return recs
}

func recorded(t *testing.T, e *edgeNode) *records {
	rec := &records{}
	e.fwd.Meters()[0].SetSink(rec)
	return rec
}

// TestUDPCloseReasons: every way a UDP flow ends or is refused is
// reported once with its reason and what it carried.
func TestUDPCloseReasons(t *testing.T) {
	t.Run("idle_timeout", func(t *testing.T) {
		_, _, e, _ := simple(t, false, edgeOpts{idle: 200 * time.Millisecond})
		rec := recorded(t, e)
		c := dialClient(t, e.addrs[0])
		require.True(t, roundTrip(c, []byte("hi"), 3*time.Second))
		r := rec.wait(t, 1)[0]
		require.Equal(t, flow.IdleTimeout, r.Reason)
		require.Equal(t, "echo-1", r.Endpoint)
		require.Equal(t, c.LocalAddr().(*net.UDPAddr).AddrPort(), r.Client)
		require.Equal(t, e.addrs[0], r.AcceleratorAddr)
		require.GreaterOrEqual(t, r.PacketsIn, uint64(1))
		require.Equal(t, r.PacketsIn*2, r.BytesIn, `"hi" per packet`)
		require.GreaterOrEqual(t, r.PacketsOut, uint64(1))
		s := e.fwd.Meters()[0].Snapshot()
		require.Zero(t, s.Active)
		require.EqualValues(t, 1, s.Ended(flow.IdleTimeout))
	})
	t.Run("shutdown", func(t *testing.T) {
		_, _, e, _ := simple(t, false, edgeOpts{})
		rec := recorded(t, e)
		c := dialClient(t, e.addrs[0])
		require.True(t, roundTrip(c, []byte("hi"), 3*time.Second))
		e.stop()
		require.Equal(t, flow.Shutdown, rec.wait(t, 1)[0].Reason)
	})
	for _, tc := range []struct {
		reason                 flow.Reason
		maxFlows, maxPerSource int
	}{
		{flow.TableFull, 1, 10},
		{flow.SourceLimit, 10, 1},
	} {
		t.Run(tc.reason.String(), func(t *testing.T) {
			_, _, e, _ := simple(t, false, edgeOpts{maxFlows: tc.maxFlows, maxPerSource: tc.maxPerSource})
			rec := recorded(t, e)
			c1 := dialClient(t, e.addrs[0])
			require.True(t, roundTrip(c1, []byte("one"), 3*time.Second))
			c2 := dialClient(t, e.addrs[0])
			_, err := c2.Write([]byte("refused"))
			require.NoError(t, err)
			r := rec.wait(t, 1)[0]
			require.Equal(t, tc.reason, r.Reason)
			require.Equal(t, c2.LocalAddr().(*net.UDPAddr).AddrPort(), r.Client)
			require.Zero(t, r.BytesIn, "a refused flow carried nothing")
			s := e.fwd.Meters()[0].Snapshot()
			require.EqualValues(t, 1, s.Flows, "a refusal is not a new flow")
			require.EqualValues(t, 1, s.Active)
		})
	}
	t.Run("endpoint_failed", func(t *testing.T) {
		// The edge names endpoints the region does not have: refused, and
		// refused again on the retry.
		f := newFleet(t, "pop-1")
		port := freeUDPPort(t)
		r := f.startRegion(t, "127.0.0.1:0", []gateway.Endpoint{gatewayEndpoint("other", netip.MustParseAddrPort("127.0.0.1:9"), port, false)})
		e := f.startEdge(t, "pop-1", r.addr(), edgeOpts{port: port, endpoints: []string{"missing-1", "missing-2"}})
		rec := recorded(t, e)
		c := dialClient(t, e.addrs[0])
		_, err := c.Write([]byte("x"))
		require.NoError(t, err)
		got := rec.wait(t, 1)[0]
		require.Equal(t, flow.EndpointFailed, got.Reason)
		require.EqualValues(t, 1, e.fwd.Meters()[0].Snapshot().Retries, "the second endpoint was tried once")
		require.EqualValues(t, 1, got.PacketsIn)
		s := e.fwd.Meters()[0].Snapshot()
		require.Zero(t, s.Active, "a failed flow leaves the table")
		require.EqualValues(t, 1, s.Dropped[flow.EdgeQueue], "its queued packet is dropped and counted")
	})
	t.Run("no_healthy_endpoint", func(t *testing.T) {
		f := newFleet(t, "pop-1")
		port := freeUDPPort(t)
		r := f.startRegion(t, "127.0.0.1:0", nil)
		e := f.startEdge(t, "pop-1", r.addr(), edgeOpts{port: port})
		rec := recorded(t, e)
		c := dialClient(t, e.addrs[0])
		_, err := c.Write([]byte("x"))
		require.NoError(t, err)
		require.Equal(t, flow.NoHealthyEndpoint, rec.wait(t, 1)[0].Reason)
	})
}
