package flow_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/router"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestReasonList: the names are the documented snake_case ones, unique,
// and round-trip; served ends and refusals are told apart.
func TestReasonList(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range flow.Reasons {
		s := r.String()
		require.NotEqual(t, "unknown", s)
		require.False(t, seen[s], "duplicate name %s", s)
		seen[s] = true
		require.Equal(t, strings.ToLower(s), s)
		back, ok := flow.ParseReason(s)
		require.True(t, ok)
		require.Equal(t, r, back)
	}
	require.Len(t, seen, 20)
	require.False(t, flow.ClientFIN.Refused())
	require.False(t, flow.Shutdown.Refused())
	require.True(t, flow.NoHealthyEndpoint.Refused())
	require.True(t, flow.CustomRoutingDenied.Refused())
	require.True(t, flow.TLSFailed.Refused())
	require.False(t, flow.Reason(0).Valid())
	b, err := flow.IdleTimeout.MarshalText()
	require.NoError(t, err)
	require.Equal(t, "idle_timeout", string(b))
}

func TestSetupFailure(t *testing.T) {
	require.Equal(t, flow.NoHealthyEndpoint, flow.SetupFailure(fmt.Errorf("pick: %w", router.ErrNoRoute)))
	require.Equal(t, flow.RegionOverloaded, flow.SetupFailure(&wire.RefusedError{Code: wire.CodeOverloaded}))
	require.Equal(t, flow.EndpointFailed, flow.SetupFailure(&wire.RefusedError{Code: wire.CodeDialRefused}))
	require.Equal(t, flow.EndpointFailed, flow.SetupFailure(errors.New("read answer: timeout")))
	require.Equal(t, flow.CustomRoutingDenied, flow.SetupFailure(router.ErrDenied))
	require.Equal(t, flow.CustomRoutingDenied, flow.SetupFailure(&wire.RefusedError{Code: wire.CodeDenied}))
	require.Equal(t, flow.NoHealthyEndpoint, flow.SetupFailure(router.ErrDestinationDown))
	require.Equal(t, flow.NoHealthyEndpoint, flow.SetupFailure(&wire.RefusedError{Code: wire.CodeDestinationDown}))
}

type recorder struct {
	mu   sync.Mutex
	recs []flow.Record
}

func (r *recorder) Flow(rec flow.Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

// TestMeter: concurrent flows add up, every record reaches the sink with
// the listener's names, and the collector exports the same numbers.
func TestMeter(t *testing.T) {
	sink := &recorder{}
	m := flow.NewMeter(flow.Listener{Key: "acc/udp/53", Accelerator: "acc", Protocol: "udp"}, sink)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				m.Open()
				m.In(10)
				m.Out(20)
				m.DatagramIn()
				m.End(flow.Record{Reason: flow.IdleTimeout})
			}
		})
	}
	wg.Wait()
	m.Refuse(flow.Record{Reason: flow.TableFull})
	m.Drop(flow.EdgeQueue, 3)
	c := m.Snapshot()
	require.EqualValues(t, 800, c.Flows)
	require.Zero(t, c.Active)
	require.EqualValues(t, 8000, c.BytesIn)
	require.EqualValues(t, 16000, c.BytesOut)
	require.EqualValues(t, 800, c.PacketsIn)
	require.EqualValues(t, 800, c.Ended(flow.IdleTimeout))
	require.EqualValues(t, 1, c.Ended(flow.TableFull))
	require.EqualValues(t, 3, c.Dropped[flow.EdgeQueue])
	require.Len(t, sink.recs, 801)
	require.Equal(t, "acc/udp/53", sink.recs[0].Listener)
	require.Equal(t, "acc", sink.recs[0].Accelerator)
	require.Equal(t, "udp", sink.recs[0].Protocol)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(flow.NewCollector(func() []*flow.Meter { return []*flow.Meter{m} }))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			name := mf.GetName()
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == "reason" || lp.GetName() == "place" {
					name += "/" + lp.GetValue()
				}
			}
			got[name] = mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
		}
	}
	require.EqualValues(t, 800, got["anyedge_edge_flows_total"])
	require.EqualValues(t, 3, got["anyedge_edge_udp_dropped_packets_total/edge_queue"])
	require.EqualValues(t, 800, got["anyedge_edge_flows_closed_total/idle_timeout"])
	require.EqualValues(t, 1, got["anyedge_edge_flows_refused_total/table_full"])
	for _, r := range flow.Reasons {
		name := "anyedge_edge_flows_closed_total/" + r.String()
		if r.Refused() {
			name = "anyedge_edge_flows_refused_total/" + r.String()
		}
		_, ok := got[name]
		require.True(t, ok, "every reason is exported, zeros included: %s", name)
	}

	m.SetSink(nil)
	m.Open()
	m.End(flow.Record{Reason: flow.ClientFIN})
	require.Len(t, sink.recs, 801, "no sink, no record")
}

// TestMeterAllocs: counting a flow and its packets allocates nothing.
func TestMeterAllocs(t *testing.T) {
	m := flow.NewMeter(flow.Listener{Key: "k"}, nil)
	n := testing.AllocsPerRun(1000, func() {
		m.Open()
		m.In(100)
		m.Out(100)
		m.End(flow.Record{Reason: flow.ClientFIN})
	})
	require.Zero(t, n)
}

func BenchmarkMeterPacket(b *testing.B) {
	m := flow.NewMeter(flow.Listener{Key: "k"}, nil)
	for b.Loop() {
		m.In(1200)
	}
}
