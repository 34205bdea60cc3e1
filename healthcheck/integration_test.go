package healthcheck

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anyedge/anyedge/healthcheck/probe"
	"github.com/stretchr/testify/require"
)

// watcher follows a Subscription and remembers each endpoint's latest
// Status.
type watcher struct {
	sub  *Subscription
	last map[string]Status
}

// wait waits until the latest Status of id satisfies ok, or fails after a
// deadline.
func (w *watcher) wait(t *testing.T, id string, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		for _, st := range w.sub.Changes() {
			w.last[st.ID] = st
		}
		if st, seen := w.last[id]; seen && ok(st) {
			return st
		}
		select {
		case <-w.sub.Ready():
		case <-deadline.C:
			t.Fatalf("%s: condition not met; last status %+v", id, w.last[id])
		}
	}
}

func is(want State) func(Status) bool {
	return func(st Status) bool { return st.State == want }
}

// TestRealEndpoints runs a Checker against a real TCP listener and a real
// HTTP server, on real time.
func TestRealEndpoints(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })

	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(srv.Close)

	const interval = 20 * time.Millisecond
	c, err := New([]Target{
		{ID: "tcp", Probe: probe.Config{Protocol: "tcp", Address: ln.Addr().String()}, Interval: interval, HealthyThreshold: 2, UnhealthyThreshold: 1},
		{ID: "web", Probe: probe.Config{Protocol: "http", Address: strings.TrimPrefix(srv.URL, "http://"), Path: "/healthz"}, Interval: interval, HealthyThreshold: 2, UnhealthyThreshold: 2},
	}, Options{})
	require.NoError(t, err)
	sub := c.Subscribe()
	t.Cleanup(sub.Close)
	w := &watcher{sub: sub, last: map[string]Status{}}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	w.wait(t, "tcp", is(Healthy))
	w.wait(t, "web", is(Healthy))

	// Passive ejection of a live endpoint, then recovery through probes.
	require.True(t, c.Eject("tcp", "dial: i/o timeout"))
	ejected := c.Snapshot()[0]
	require.Equal(t, Unhealthy, ejected.State)
	require.True(t, ejected.Ejected)
	st := w.wait(t, "tcp", func(st Status) bool { return st.State == Healthy && st.Changed.After(ejected.Changed) })
	require.False(t, st.Ejected)
	require.Positive(t, st.Latency)

	status.Store(http.StatusServiceUnavailable)
	st = w.wait(t, "web", is(Unhealthy))
	require.Equal(t, "http: status 503 outside 200-399", st.LastErr)

	require.NoError(t, ln.Close())
	st = w.wait(t, "tcp", is(Unhealthy))
	// A probe racing the close can meet a reset instead of a refusal.
	require.Regexp(t, "connection (refused|reset by peer)", st.LastErr)
	require.False(t, st.Ejected)
}

// TestImports keeps healthcheck free of edge and control (see
// ARCHITECTURE.md: dependencies point one way).
func TestImports(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/anyedge/anyedge/healthcheck/...").Output()
	require.NoError(t, err)
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/anyedge/anyedge/edge", "github.com/anyedge/anyedge/control", "github.com/anyedge/anyedge/cmd"} {
			if pkg == banned || strings.HasPrefix(pkg, banned+"/") {
				t.Errorf("healthcheck depends on %s", pkg)
			}
		}
	}
}
