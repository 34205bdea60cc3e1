package dev

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/config"
)

// syncBuffer is a log destination safe for the nodes' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRegionFailureStartsNoEdge: the edges start only once every region
// serves, so a region that cannot start (its backbone port is taken) ends
// the run with an error naming it, and no edge was started to dial it.
func TestRegionFailureStartsNoEdge(t *testing.T) {
	b, err := os.ReadFile("../../configs/quickstart.yaml")
	require.NoError(t, err)
	doc, err := config.Load(b, config.LoadOptions{Env: []string{}})
	require.NoError(t, err)
	movePorts(t, doc)
	require.NoError(t, doc.Validate())
	region := doc.Topology.Regions[0]
	taken, err := net.ListenPacket("udp", region.Backbone.Listen)
	require.NoError(t, err)
	defer taken.Close()

	logs := &syncBuffer{}
	err = Run(context.Background(), Options{Doc: doc, Version: "test", Dashboard: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	require.ErrorContains(t, err, region.Name)
	require.NotContains(t, logs.String(), "component=edge", "an edge started although its region never served:\n%s", logs.String())
	require.False(t, strings.Contains(logs.String(), "backbone dial"), "no edge dialled")
}
