package backbone_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/wire"
)

// TestFleetRelay: what one edge says of itself reaches another edge
// through the region; stale states lose to newer ones; an edge whose
// connections end leaves the fleet.
func TestFleetRelay(t *testing.T) {
	l := newLab(t)
	gw := gateway.New(gateway.Config{})
	srv, err := backbone.Listen(backbone.ServerConfig{
		Listen: "127.0.0.1:0",
		TLS: pki.ServerConfig(l.store(t, regionName), func(n string) bool {
			return n == edgeName || n == strangerName
		}, nil),
	}, gw)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.NoError(t, <-done)
	})

	// Edge A runs until the test stops it; edge B watches.
	a, err := backbone.NewClient(backbone.ClientConfig{Region: regionName, Addr: srv.Addr().String(), Connections: 2,
		TLS: l.clientTLS(t, edgeName), Hello: backbone.Hello(edgeName, "test")})
	require.NoError(t, err)
	a.SetEdgeState(wire.EdgeState{Epoch: 10, Seq: 1, Ready: []string{"web"}})
	actx, stopA := context.WithCancel(context.Background())
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(actx) }()
	t.Cleanup(func() { stopA(); <-aDone })
	b := l.startClient(t, strangerName, srv.Addr().String(), 1)
	regions := backbone.Regions{regionName: b}

	stateOf := func(node string) (wire.EdgeState, bool) {
		fleet, ok := regions.Fleet()
		if !ok {
			return wire.EdgeState{}, false
		}
		st, ok := fleet[node]
		return st, ok
	}
	eventually(t, 10*time.Second, func() bool {
		st, ok := stateOf(edgeName)
		return ok && st.Seq == 1 && len(st.Ready) == 1 && st.Ready[0] == "web"
	}, "edge B never learnt edge A's state")

	a.SetEdgeState(wire.EdgeState{Epoch: 10, Seq: 2, Draining: true})
	eventually(t, 5*time.Second, func() bool {
		st, ok := stateOf(edgeName)
		return ok && st.Draining && len(st.Ready) == 0
	}, "edge B never learnt that A drains")

	// A state older than the region's is ignored; a restarted edge (new
	// epoch) starts its count again.
	a.SetEdgeState(wire.EdgeState{Epoch: 10, Seq: 1, Ready: []string{"web"}})
	a.SetEdgeState(wire.EdgeState{Epoch: 11, Seq: 1, Ready: []string{"api"}})
	eventually(t, 5*time.Second, func() bool {
		st, ok := stateOf(edgeName)
		return ok && st.Epoch == 11 && st.Ready[0] == "api"
	}, "the restarted edge's state did not win")
	require.Equal(t, []wire.EdgeState{{Node: edgeName, Epoch: 11, Seq: 1, Ready: []string{"api"}}}, gw.Edges())

	stopA()
	require.NoError(t, <-aDone)
	aDone <- nil
	eventually(t, 10*time.Second, func() bool { _, ok := stateOf(edgeName); return !ok },
		"edge A stayed in the fleet after its connections closed")
	_, ok := regions.Fleet()
	require.True(t, ok, "the region still relays (an empty fleet)")
}
