package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/node"
	"github.com/anyedge/anyedge/internal/testport"
)

// mixedDoc is one accelerator with a TCP and a UDP listener, both served
// from region r1: the TCP endpoint answers, the UDP endpoint's health
// check probes udpHealthPort (closed unless a test opens it).
func mixedDoc(t *testing.T, tcpPort, udpPort int, tcpEp, udpEp string, udpHealthPort, adminPoP, adminR1 int, r1 string, popExtra ...string) *config.Document {
	t.Helper()
	y := fmt.Sprintf(`accelerators:
  - name: mixed
    ip_addresses: [127.0.0.1]
    listeners:
      - protocol: tcp
        port_ranges: [{from: %d}]
        endpoint_groups:
          - region: r1
            health_check: %s
            endpoints: [{id: web, address: %q}]
      - protocol: udp
        port_ranges: [{from: %d}]
        endpoint_groups:
          - region: r1
            health_check: {protocol: tcp, port: %d, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2}
            endpoints: [{id: dns, address: %q}]
topology:
  pops:
    - name: pop
      admin: 127.0.0.1:%d
%s  regions:
    - name: r1
      admin: 127.0.0.1:%d
      backbone: {listen: %q}
`, tcpPort, healthCheck, tcpEp, udpPort, udpHealthPort, udpEp, adminPoP, strings.Join(popExtra, ""), adminR1, r1)
	doc, err := config.Load([]byte(y), config.LoadOptions{})
	require.NoError(t, err, y)
	return doc
}

// startNode runs one node of doc until the test ends, without waiting for
// it to be ready.
func startNode(t *testing.T, doc *config.Document, name string, store *pki.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- node.Run(ctx, node.Options{Doc: doc, Node: name, Store: store, Logger: testLogger(t).With("test_node", name)})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(stopTimeout):
			t.Errorf("%s did not stop within %s", name, stopTimeout)
		}
	})
}

// edgeStatus reads an edge's /status.
func edgeStatus(adminAddr string) (node.EdgeStatus, error) {
	var st node.EdgeStatus
	out, err := adminCall(adminAddr, "status")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("status: %w\n%s", err, out)
	}
	return st, nil
}

// waitStatus polls an edge's /status until cond holds.
func waitStatus(t *testing.T, adminAddr, what string, cond func(node.EdgeStatus) bool) node.EdgeStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := edgeStatus(adminAddr)
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(st, "", "  ")
			t.Fatalf("%s: not within 15 s (%v); last status:\n%s", what, err, b)
		}
		<-tick.C
	}
}

// TestReadinessPerListener: a UDP listener whose only endpoint is
// unhealthy makes its accelerator not ready (and /readyz 503) although
// the accelerator's TCP listener serves; /status says which listener and
// that it fails open. When the endpoint comes back, the accelerator is
// ready again.
func TestReadinessPerListener(t *testing.T) {
	web := startEcho(t, "web", nil)
	healthPort := testport.Port(t)
	adminPoP, adminR1 := testport.Port(t), testport.Port(t)
	doc := mixedDoc(t, testport.Port(t), testport.Port(t), web.addr(), "127.0.0.1:9", healthPort,
		adminPoP, adminR1, fmt.Sprintf("127.0.0.1:%d", testport.Port(t)))
	stores := ephemeralStores(t, "r1", "pop")
	runNodes(t, doc, []string{"r1"}, stores)
	startNode(t, doc, "pop", stores["pop"])
	admin := fmt.Sprintf("127.0.0.1:%d", adminPoP)

	st := waitStatus(t, admin, "udp listener not ready", func(st node.EdgeStatus) bool {
		return len(st.Listeners) == 2 && st.Listeners[0].Ready && !st.Listeners[1].Ready
	})
	require.Equal(t, "mixed/tcp/"+fmt.Sprint(st.Listeners[0].Ports[0].From), st.Listeners[0].Key)
	require.Equal(t, "udp", st.Listeners[1].Protocol)
	require.True(t, st.Listeners[1].FailOpen, "r1 is reachable, its endpoint is not healthy")
	require.False(t, st.Listeners[0].FailOpen)
	require.Equal(t, []node.AcceleratorState{{Name: "mixed", Ready: false, FailOpen: true}}, st.Accelerators)
	require.False(t, st.Ready)
	_, err := adminCall(admin, "ready")
	require.Error(t, err, "/readyz must be 503 while a listener cannot serve")

	// The endpoint's health check passes again: every listener is ready.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", healthPort))
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	waitStatus(t, admin, "every listener ready", func(st node.EdgeStatus) bool { return st.Ready })
	_, err = adminCall(admin, "ready")
	require.NoError(t, err)
}

func adminCall(addr, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return admin.Call(ctx, addr, cmd)
}
