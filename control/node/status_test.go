package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/node"
)

// TestRegionStatusHistory: a region's /status names each endpoint's
// listener and weight and keeps its last state changes, with time, states
// and reason.
func TestRegionStatusHistory(t *testing.T) {
	e1 := startEcho(t, "e1", nil)
	f := newFleet(t)
	f.r1Eps = []string{"e1=" + e1.addr()}
	runNodes(t, f.doc(t), []string{"r1"}, ephemeralStores(t, "r1"))
	addr := fmt.Sprintf("127.0.0.1:%d", f.adminR1)

	endpoint := func() node.EndpointState {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := admin.Call(ctx, addr, "status")
		require.NoError(t, err)
		var st node.RegionStatus
		require.NoError(t, json.Unmarshal([]byte(out), &st))
		require.Len(t, st.Endpoints, 1)
		return st.Endpoints[0]
	}
	require.Eventually(t, func() bool { return endpoint().State == "healthy" }, 10*time.Second, 50*time.Millisecond)
	e1.kill()
	require.Eventually(t, func() bool { return endpoint().State == "unhealthy" }, 10*time.Second, 50*time.Millisecond)
	ep := endpoint()
	require.Equal(t, "failover/tcp/"+fmt.Sprint(f.edgePort), ep.Listener)
	require.Equal(t, 128, ep.Weight)
	require.Len(t, ep.Changes, 2)
	require.Equal(t, node.StateChange{At: ep.Changes[0].At, From: "unknown", To: "healthy"}, ep.Changes[0])
	last := ep.Changes[1]
	require.Equal(t, "healthy", last.From)
	require.Equal(t, "unhealthy", last.To)
	require.Contains(t, last.Reason, "refused")
	require.True(t, last.At.Equal(ep.Changed), "the last change is the state's change time")
}
