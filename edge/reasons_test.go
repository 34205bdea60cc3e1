package edge_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/flow"
)

// records is a flow.Sink that keeps every record.
type records struct {
	mu   sync.Mutex
	recs []flow.Record
	more chan struct{}
}

func newRecords() *records { return &records{more: make(chan struct{}, 1)} }

func (r *records) Flow(rec flow.Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

// wait returns the first record, waiting up to 10 s for it.
func (r *records) wait(t *testing.T) flow.Record {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if len(r.recs) > 0 {
			rec := r.recs[0]
			n := len(r.recs)
			r.mu.Unlock()
			require.Equal(t, 1, n, "one record per flow: %+v", r.recs)
			return rec
		}
		r.mu.Unlock()
		select {
		case <-r.more:
		case <-deadline:
			t.Fatal("no flow record")
		}
	}
}

// count returns how many records arrived.
func (r *records) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}

// waitN waits up to 10 s for n records and returns them.
func (r *records) waitN(t *testing.T, n int) []flow.Record {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if len(r.recs) >= n {
			recs := append([]flow.Record(nil), r.recs...)
			r.mu.Unlock()
			return recs
		}
		r.mu.Unlock()
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("%d flow records, want %d", r.count(), n)
		}
	}
}

// reasonLab is a lab whose listener reports to a recording meter.
func reasonLab(t *testing.T, endpoint string, o labOpts) (*lab, *records, *flow.Meter) {
	t.Helper()
	rec := newRecords()
	m := flow.NewMeter(flow.Listener{Key: "test/tcp", Accelerator: "test", Protocol: "tcp"}, rec)
	o.meter = m
	return startLabWith(t, map[string]string{"ep": endpoint}, o), rec, m
}

// serveOne serves the first connection of a fresh endpoint with handle.
func serveOne(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveEach(t, ln, func(c net.Conn) { handle(c.(*net.TCPConn)) })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	return c.(*net.TCPConn)
}

// echoedFlow opens a flow through a reason lab to an echo server and
// waits until one byte has come back.
func echoedFlow(t *testing.T) (*lab, *records, *flow.Meter, *net.TCPConn) {
	t.Helper()
	l, rec, m := reasonLab(t, echoServer(t), labOpts{})
	c := dial(t, l.edgeAddr)
	_, err := c.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 1))
	require.NoError(t, err)
	return l, rec, m, c
}

// tryRead connects and reads until the edge resets the connection (which
// may come before the connect returns).
func tryRead(addr string) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Read(make([]byte, 1))
}

// TestCloseReasons: every way a TCP flow ends is reported once, with its
// reason, its endpoint and what it carried.
func TestCloseReasons(t *testing.T) {
	t.Run("client_fin", func(t *testing.T) {
		l, rec, m := reasonLab(t, echoServer(t), labOpts{})
		c := dial(t, l.edgeAddr)
		_, err := c.Write([]byte("hello"))
		require.NoError(t, err)
		require.NoError(t, c.CloseWrite())
		_, err = io.ReadAll(c)
		require.NoError(t, err)
		r := rec.wait(t)
		require.Equal(t, flow.ClientFIN, r.Reason)
		require.Equal(t, "ep", r.Endpoint)
		require.Equal(t, "region-test", r.Region)
		require.EqualValues(t, 5, r.BytesIn)
		require.EqualValues(t, 5+32, r.BytesOut, "the echo and its SHA-256")
		require.Positive(t, r.PacketsIn)
		require.Positive(t, r.PacketsOut)
		require.Equal(t, c.LocalAddr().String(), r.Client.String())
		require.Equal(t, l.edgeAddr, r.AcceleratorAddr.String())
		require.Equal(t, "test/tcp", r.Listener)
		require.False(t, r.End.Before(r.Start))
		s := m.Snapshot()
		require.EqualValues(t, 1, s.Flows)
		require.Zero(t, s.Active)
		require.EqualValues(t, 5, s.BytesIn)
		require.EqualValues(t, 1, s.Ended(flow.ClientFIN))
	})
	t.Run("endpoint_fin", func(t *testing.T) {
		l, rec, _ := reasonLab(t, serveOne(t, func(c *net.TCPConn) {
			_, _ = c.Write([]byte("bye"))
			_ = c.CloseWrite()
			_, _ = io.ReadAll(c)
		}), labOpts{})
		c := dial(t, l.edgeAddr)
		_, err := io.ReadAll(c)
		require.NoError(t, err)
		require.NoError(t, c.CloseWrite())
		require.Equal(t, flow.EndpointFIN, rec.wait(t).Reason)
	})
	t.Run("client_reset", func(t *testing.T) {
		_, rec, _, c := echoedFlow(t)
		require.NoError(t, c.SetLinger(0))
		require.NoError(t, c.Close())
		require.Equal(t, flow.ClientReset, rec.wait(t).Reason)
	})
	t.Run("endpoint_reset", func(t *testing.T) {
		l, rec, _ := reasonLab(t, serveOne(t, func(c *net.TCPConn) {
			_, _ = io.ReadFull(c, make([]byte, 4))
			_ = c.SetLinger(0)
			_ = c.Close()
		}), labOpts{})
		c := dial(t, l.edgeAddr)
		_, err := c.Write([]byte("ping"))
		require.NoError(t, err)
		_, _ = c.Read(make([]byte, 1))
		require.Equal(t, flow.EndpointReset, rec.wait(t).Reason)
	})
	t.Run("idle_timeout", func(t *testing.T) {
		l, rec, _ := reasonLab(t, echoServer(t), labOpts{idle: 200 * time.Millisecond})
		c := dial(t, l.edgeAddr)
		_, _ = c.Read(make([]byte, 1)) // the edge cuts the silent flow
		require.Equal(t, flow.IdleTimeout, rec.wait(t).Reason)
	})
	t.Run("endpoint_failed", func(t *testing.T) {
		l, rec, m := reasonLab(t, refusingAddr(t), labOpts{})
		tryRead(l.edgeAddr)
		r := rec.wait(t)
		require.Equal(t, flow.EndpointFailed, r.Reason)
		require.Equal(t, "ep", r.Endpoint, "the endpoint tried last")
		require.EqualValues(t, 1, m.Snapshot().Ended(flow.EndpointFailed))
	})
	t.Run("no_healthy_endpoint", func(t *testing.T) {
		l, rec, _ := reasonLab(t, echoServer(t), labOpts{drained: true})
		tryRead(l.edgeAddr)
		r := rec.wait(t)
		require.Equal(t, flow.NoHealthyEndpoint, r.Reason)
		require.Empty(t, r.Endpoint)
	})
	t.Run("client_aborted", func(t *testing.T) {
		// The region holds its answer; the client resets while it waits.
		addr, _, e := startInspected(t, edge.EarlyTLS, echoServer(t), 2*time.Second)
		rec := newRecords()
		e.Meters()[0].SetSink(rec)
		c := dial(t, addr)
		_, err := c.Write([]byte{22, 3, 1, 2, 0, 1, 0, 1}) // half a ClientHello
		require.NoError(t, err)
		require.NoError(t, c.SetLinger(0))
		require.NoError(t, c.Close())
		require.Equal(t, flow.ClientAborted, rec.wait(t).Reason)
	})
	t.Run("shutdown", func(t *testing.T) {
		l, rec, m, _ := echoedFlow(t)
		l.stop()
		require.Equal(t, flow.Shutdown, rec.wait(t).Reason)
		require.Zero(t, m.Snapshot().Active)
	})
	t.Run("backbone_lost", func(t *testing.T) {
		l, rec, _, _ := echoedFlow(t)
		require.NoError(t, l.region.Close())
		require.Equal(t, flow.BackboneLost, rec.wait(t).Reason)
	})
}
