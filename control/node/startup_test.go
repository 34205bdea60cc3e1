package node_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/node"
)

// TestStartupFailureReleasesListeners: an edge whose start-up fails after
// its listeners were bound (here: its admin address is taken) returns the
// error and leaves nothing bound, so that a corrected restart can bind.
func TestStartupFailureReleasesListeners(t *testing.T) {
	f := newFleet(t)
	f.r1Eps = []string{"e1=127.0.0.1:9"}
	doc := f.doc(t)
	taken, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", f.adminPoP))
	require.NoError(t, err)
	defer taken.Close()

	err = node.Run(context.Background(), node.Options{Doc: doc, Node: "pop",
		Store: ephemeralStores(t, "pop")["pop"], Logger: testLogger(t)})
	require.Error(t, err)
	require.Contains(t, err.Error(), "admin")
	ln, err := net.Listen("tcp", f.edgeAddr())
	require.NoError(t, err, "the edge's listener stayed bound after a failed start")
	_ = ln.Close()
}
