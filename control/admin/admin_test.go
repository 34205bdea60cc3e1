package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeNode is a node whose readiness and drain state the test sets.
type fakeNode struct {
	mu       sync.Mutex
	ready    bool
	draining bool
}

func (n *fakeNode) Status() any {
	n.mu.Lock()
	defer n.mu.Unlock()
	return map[string]any{"ready": n.ready, "draining": n.draining}
}

func (n *fakeNode) Ready() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ready && !n.draining
}

func (n *fakeNode) Drain() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.draining = true
	return nil
}

func (n *fakeNode) Undrain() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.draining {
		return errors.New("not draining")
	}
	n.draining = false
	return nil
}

// regionNode cannot drain.
type regionNode struct{}

func (regionNode) Status() any { return "region" }
func (regionNode) Ready() bool { return true }

func serve(t *testing.T, n Node, reg *prometheus.Registry) string {
	t.Helper()
	return start(t, Options{Addr: "127.0.0.1:0", Node: n, Registry: reg}).Addr()
}

// start runs an API with opts until the end of the test.
func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Listen(opts)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Serve(t.Context()) }()
	t.Cleanup(func() { require.NoError(t, <-done) })
	return s
}

func TestAdminAPI(t *testing.T) {
	n := &fakeNode{}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "anyedge", Name: "test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	addr := serve(t, n, reg)
	ctx := context.Background()

	_, err := Call(ctx, addr, "ready")
	require.ErrorContains(t, err, "503", "not ready yet")
	n.mu.Lock()
	n.ready = true
	n.mu.Unlock()
	out, err := Call(ctx, addr, "ready")
	require.NoError(t, err)
	require.Equal(t, "ready\n", out)

	out, err = Call(ctx, addr, "drain")
	require.NoError(t, err)
	require.Equal(t, "ok\n", out)
	out, err = Call(ctx, addr, "status")
	require.NoError(t, err)
	require.Contains(t, out, `"draining": true`)
	_, err = Call(ctx, addr, "ready")
	require.Error(t, err, "a draining node is not ready")

	_, err = Call(ctx, addr, "undrain")
	require.NoError(t, err)
	_, err = Call(ctx, addr, "undrain")
	require.ErrorContains(t, err, "not draining", "the node's refusal reaches the caller")

	_, err = Call(ctx, addr, "reboot")
	require.ErrorContains(t, err, `unknown command "reboot"`)
}

func TestAdminMetricsAndRegion(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "anyedge", Name: "up", Help: "1."}, func() float64 { return 1 }))
	addr := serve(t, regionNode{}, reg)
	ctx := context.Background()
	_, err := Call(ctx, addr, "drain")
	require.ErrorContains(t, err, "does not drain")

	body, err := get(ctx, "http://"+addr+"/metrics")
	require.NoError(t, err)
	require.Contains(t, body, "anyedge_up 1")
	body, err = get(ctx, "http://"+addr+"/livez")
	require.NoError(t, err)
	require.Equal(t, "ok\n", body)
}

func TestCallUnreachable(t *testing.T) {
	_, err := Call(context.Background(), "127.0.0.1:1", "status")
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "admin API at 127.0.0.1:1"), err.Error())
}
func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
