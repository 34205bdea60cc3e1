package node_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/node"
)

// TestDrain: `ctl drain` and SIGTERM (Options.Drain) start a drain; the
// edge keeps serving new flows through bgp_grace and, once withdrawn,
// exits as soon as no flow is left (never before bgp_grace): node.Run
// returns nil; `ctl undrain` before that reverses it.
func TestDrain(t *testing.T) {
	f := newFleet(t)
	f.r1Eps = []string{"e1=" + startLineEcho(t)}
	f.popExtra = "      drain: {bgp_grace: 300ms, timeout: 60s}\n"
	doc := f.doc(t)
	stores := ephemeralStores(t, "pop", "r1")
	runNodes(t, doc, []string{"r1"}, stores)

	adminAddr := fmt.Sprintf("127.0.0.1:%d", f.adminPoP)
	for _, how := range []string{"ctl", "sigterm"} {
		t.Run(how, func(t *testing.T) {
			drain := make(chan struct{})
			ready := make(chan struct{})
			done := make(chan error, 1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				done <- node.Run(ctx, node.Options{Doc: doc, Node: "pop", Store: stores["pop"],
					Logger: testLogger(t), Drain: drain, Ready: func() { close(ready) }})
			}()
			select {
			case <-ready:
			case <-time.After(15 * time.Second):
				t.Fatal("edge not ready")
			}
			waitServing(t, f.edgeAddr())
			actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer acancel()

			if how == "ctl" {
				_, err := admin.Call(actx, adminAddr, "drain")
				require.NoError(t, err)
				st, err := admin.Call(actx, adminAddr, "status")
				require.NoError(t, err)
				require.Contains(t, st, `"draining": true`)
				_, err = admin.Call(actx, adminAddr, "ready")
				require.Error(t, err, "a draining edge is not ready")
				_, err = admin.Call(actx, adminAddr, "undrain")
				require.NoError(t, err)
				st, err = admin.Call(actx, adminAddr, "status")
				require.NoError(t, err)
				require.Contains(t, st, `"draining": false`)
				_, err = admin.Call(actx, adminAddr, "drain")
				require.NoError(t, err)
			} else {
				close(drain)
			}
			start := time.Now()
			// A flow open across the drain keeps the edge from exiting, so
			// that new flows can be tried for as long as it takes on a
			// loaded machine; they must keep working until the last flow
			// ends.
			held, err := net.DialTimeout("tcp", f.edgeAddr(), 5*time.Second)
			require.NoError(t, err)
			defer held.Close()
			served := 0
			for served < 3 {
				select {
				case err := <-done:
					t.Fatalf("the edge exited with a flow open: %v", err)
				default:
				}
				_, err := request(f.edgeAddr(), 5*time.Second)
				require.NoError(t, err, "a new flow failed during the drain")
				served++
			}
			require.NoError(t, held.Close())
			select {
			case err := <-done:
				require.NoError(t, err, "a completed drain is a clean exit")
				require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "exit before bgp_grace")
			case <-time.After(30 * time.Second):
				t.Fatal("the drain did not end with its last flow")
			}
		})
	}
}
