package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/node"
)

// startLineEcho serves an endpoint that answers every line with the same
// line and closes after the client's FIN.
func startLineEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

// TestDrainEndsWithLastFlow: a connection open across SIGTERM is served
// through the whole drain — GRACEFUL_SHUTDOWN, bgp_grace, the withdrawal —
// and ends cleanly when its client closes it (flow log: client_fin, no
// reset); the edge then exits at once instead of waiting out
// drain.timeout, and never before bgp_grace.
func TestDrainEndsWithLastFlow(t *testing.T) {
	f := newFleet(t)
	f.r1Eps = []string{"e1=" + startLineEcho(t)}
	logPath := filepath.Join(t.TempDir(), "flows.log")
	const grace = 300 * time.Millisecond
	f.popExtra = fmt.Sprintf("      drain: {bgp_grace: %s, timeout: 60s}\n      flow_logs: {enabled: true, path: %q}\n", grace, logPath)
	doc := f.doc(t)
	stores := ephemeralStores(t, "pop", "r1")
	runNodes(t, doc, []string{"r1"}, stores)

	drain := make(chan struct{})
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- node.Run(context.Background(), node.Options{Doc: doc, Node: "pop", Store: stores["pop"],
			Logger: testLogger(t), Drain: drain, Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case <-time.After(15 * time.Second):
		t.Fatal("edge not ready")
	}
	waitServing(t, f.edgeAddr())

	c, err := net.DialTimeout("tcp", f.edgeAddr(), 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	line := func(s string) {
		t.Helper()
		_, err := io.WriteString(c, s+"\n")
		require.NoError(t, err)
		got, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, s+"\n", got)
	}
	line("before the drain")

	close(drain) // what SIGTERM does
	start := time.Now()
	adminAddr := fmt.Sprintf("127.0.0.1:%d", f.adminPoP)
	deadline := time.Now().Add(15 * time.Second)
	for {
		actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := admin.Call(actx, adminAddr, "status")
		cancel()
		if err == nil && strings.Contains(st, `"drain_phase": "withdrawn"`) {
			break
		}
		require.True(t, time.Now().Before(deadline), "the drain never withdrew")
		select {
		case err := <-done:
			t.Fatalf("the edge exited with a flow open: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	line("after the withdrawal")
	select {
	case err := <-done:
		t.Fatalf("the edge exited with a flow open: %v", err)
	default:
	}
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	rest, err := io.ReadAll(r)
	require.NoError(t, err, "the flow ended with a reset, not the endpoint's FIN")
	require.Empty(t, rest)

	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the drain waits for drain.timeout though no flow is left")
	}
	require.GreaterOrEqual(t, time.Since(start), grace, "exit before bgp_grace")

	b, err := os.ReadFile(logPath)
	require.NoError(t, err)
	var reasons []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct {
			Reason string `json:"reason"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &rec), l)
		reasons = append(reasons, rec.Reason)
	}
	require.Contains(t, reasons, "client_fin")
	require.NotContains(t, reasons, "shutdown")
	require.NotContains(t, reasons, "client_reset")
}
