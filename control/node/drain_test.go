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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ep := startEcho(t, "e1", ln)
	f := newFleet(t)
	f.r1Eps = []string{"e1=" + ep.addr()}
	f.popExtra = "      drain: {bgp_grace: 300ms, timeout: 700ms}\n"
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
			// New flows keep working while the drain runs its course.
			served := 0
			giveUp := time.After(10 * time.Second)
			for {
				select {
				case err := <-done:
					require.NoError(t, err, "a completed drain is a clean exit")
					took := time.Since(start)
					require.GreaterOrEqual(t, took, 300*time.Millisecond, "exit before bgp_grace")
					require.Positive(t, served, "the edge served during the drain")
					return
				case <-time.After(50 * time.Millisecond):
					if _, err := request(f.edgeAddr(), time.Second); err == nil {
						served++
					}
				case <-giveUp:
					t.Fatal("drain did not end")
				}
			}
		})
	}
}
