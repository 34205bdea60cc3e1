package gateway_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/wire"
)

// TestRegionLimits: a region at its own flow cap answers a new flow
// "overloaded" (counted as a refused stream), serves the flows it has,
// and takes new ones once a flow ended. UDP flows count too.
func TestRegionLimits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits gateway.Limits
	}{
		{"global", gateway.Limits{MaxFlows: 2}},
		{"per edge", gateway.Limits{MaxFlowsPerEdge: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0, func(cfg *gateway.Config, _ *endpoint) { cfg.Limits = tc.limits })
			t.Cleanup(func() { _ = f.gw.Close() }) // its UDP flows
			s1, c1 := f.flow(t)
			// A UDP flow takes the second place.
			u := f.open(t)
			_, err := u.Write(headerKind(wire.KindUDP, "web", port))
			require.NoError(t, err)
			require.Equal(t, wire.CodeOK, readCode(t, u))

			s3 := f.open(t)
			_, err = s3.Write(header("web", port))
			require.NoError(t, err)
			require.Equal(t, wire.CodeOverloaded, readCode(t, s3))
			require.Equal(t, int64(2), f.gw.ActiveFlows())
			roundTrip(t, s1, c1)

			// The TCP flow ends (reset both ways); its place is free again.
			s1.CancelWrite(wire.StreamReset)
			s1.CancelRead(wire.StreamReset)
			deadline := time.Now().Add(10 * time.Second)
			for f.gw.ActiveFlows() > 1 {
				require.True(t, time.Now().Before(deadline), "the flow did not end")
				time.Sleep(time.Millisecond)
			}
			s4, c4 := f.flow(t)
			roundTrip(t, s4, c4)
			require.Positive(t, f.metrics.StreamsRefused()[wire.CodeOverloaded])
		})
	}
}
