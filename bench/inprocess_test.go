package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/node"
	"github.com/anyedge/anyedge/internal/testport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const docTemplate = `
accelerators:
  - name: bench
    ip_addresses: [127.0.0.1]
    listeners:
      - protocol: tcp
        port_ranges: [{from: %[1]d}]
        endpoint_groups:
          - region: region-bench
            health_check: {protocol: tcp, interval: 5s, timeout: 2s}
            endpoints: [{id: sink, address: "%[3]s"}]
      - protocol: tcp
        port_ranges: [{from: %[2]d}]
        endpoint_groups:
          - region: region-bench
            health_check: {protocol: tcp, interval: 5s, timeout: 2s}
            endpoints: [{id: echo, address: "%[4]s"}]
topology:
  pki_dir: %[5]s
  pops:
    - name: pop-bench
      admin: 127.0.0.1:%[6]d
  regions:
    - name: region-bench
      admin: 127.0.0.1:%[7]d
      backbone: {listen: "127.0.0.1:%[8]d"}
`

// fleet is an edge and a region running in this process.
type fleet struct {
	sink, echo            string // edge listener addresses
	popAdmin, regionAdmin string // the nodes' admin APIs
}

// serve accepts on a new listener and runs handle for every connection,
// then closes the connection: an endpoint that finished with a flow ends
// its side too, so that the flow ends through the edge and the region as
// well (a half-closed flow would hold its backbone stream until the idle
// timeout). Everything stops at cleanup.
func serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]struct{}{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				handle(c)
				_ = c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// startFleet starts the region and the edge with a sink endpoint (reads
// and discards) and an echo endpoint, and waits until the edge serves.
func startFleet(t testing.TB) fleet {
	t.Helper()
	sink := serve(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	echo := serve(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Now()
	require.NoError(t, pki.InitCA(dir, time.Hour, now))
	require.NoError(t, pki.Issue(dir, "pop-bench", time.Hour, now))
	require.NoError(t, pki.Issue(dir, "region-bench", time.Hour, now))
	popAdminPort, regionAdminPort := testport.Port(t), testport.Port(t)
	f := fleet{sink: fmt.Sprintf("127.0.0.1:%d", testport.Port(t)), echo: fmt.Sprintf("127.0.0.1:%d", testport.Port(t)),
		popAdmin: fmt.Sprintf("127.0.0.1:%d", popAdminPort), regionAdmin: fmt.Sprintf("127.0.0.1:%d", regionAdminPort)}
	var sinkPort, echoPort int
	_, _ = fmt.Sscanf(f.sink, "127.0.0.1:%d", &sinkPort)
	_, _ = fmt.Sscanf(f.echo, "127.0.0.1:%d", &echoPort)
	doc, err := config.Load(fmt.Appendf(nil, docTemplate, sinkPort, echoPort, sink, echo, dir,
		popAdminPort, regionAdminPort, testport.Port(t)), config.LoadOptions{Env: []string{}})
	require.NoError(t, err)

	runNodes(t, func(string) node.Options { return node.Options{Doc: doc} })
	return f
}

// runNodes runs the region and the edge of the bench documents, each with
// opts (its Node set), in turn, waiting for each to be ready; they stop at
// cleanup.
func runNodes(t testing.TB, opts func(name string) node.Options) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, name := range []string{"region-bench", "pop-bench"} {
		ready := make(chan struct{})
		o := opts(name)
		o.Node, o.Ready = name, func() { close(ready) }
		wg.Go(func() {
			err := node.Run(ctx, o)
			if err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		})
		select {
		case <-ready:
		case err := <-errs:
			cancel()
			wg.Wait()
			t.Fatal(err)
		case <-time.After(20 * time.Second):
			cancel()
			wg.Wait()
			t.Fatalf("%s not ready", name)
		}
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

func echoOnce(c net.Conn) error {
	b := []byte{'x'}
	if _, err := c.Write(b); err != nil {
		return err
	}
	_, err := io.ReadFull(c, b)
	return err
}

// TestInProcessFleet checks that the fleet the benchmarks use carries bytes,
// and that a flow the client closes ends at the edge and at the region:
// the echo endpoint closes its side too, so BenchmarkConnectEcho leaves no
// half-closed flow holding a backbone stream.
func TestInProcessFleet(t *testing.T) {
	f := startFleet(t)
	c, err := net.DialTimeout("tcp", f.echo, 2*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	require.NoError(t, echoOnce(c))
	edge, region := activeFlows(t, f)
	require.Equal(t, [2]int64{1, 1}, [2]int64{edge, region}, "active flows at the edge and the region")
	require.NoError(t, c.Close())
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for edge, region := activeFlows(t, f); edge != 0 || region != 0; edge, region = activeFlows(t, f) {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("10 s after the client closed, the flow is still active: %d at the edge, %d at the region", edge, region)
		}
	}
}

// activeFlows reads the flows open at the edge and at the region from
// their /status.
func activeFlows(t *testing.T, f fleet) (edge, region int64) {
	t.Helper()
	get := func(addr string, v any) {
		c := admin.NewClient(addr, nil)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := c.Get(ctx, "/status")
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, v), "%s", b)
	}
	var es node.EdgeStatus
	var rs node.RegionStatus
	get(f.popAdmin, &es)
	get(f.regionAdmin, &rs)
	return es.Flows.ActiveFlows, rs.ActiveFlows
}

// BenchmarkBulk sends 1 MiB per iteration over one connection through edge
// and region to a discarding endpoint.
func BenchmarkBulk(b *testing.B) {
	f := startFleet(b)
	c, err := net.Dial("tcp", f.sink)
	require.NoError(b, err)
	defer c.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConnectEcho is one new flow per iteration: connect, echo one
// byte, close.
func BenchmarkConnectEcho(b *testing.B) {
	f := startFleet(b)
	b.ResetTimer()
	for b.Loop() {
		c, err := net.Dial("tcp", f.echo)
		if err != nil {
			b.Fatal(err)
		}
		if err := echoOnce(c); err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
}

// BenchmarkIdleFlows opens 2,000 flows that each carried one byte end to
// end, and reports the Go heap and stack held per flow by the edge and the
// region together (the in-process client and echo endpoint are measured
// alone first, idle_endpoint_B/flow, and subtracted). With
// BENCH_IDLE_HEAPPROFILE=FILE it writes a heap profile while the flows
// through anyedge are open.
func BenchmarkIdleFlows(b *testing.B) {
	const flows = 2000
	f := startFleet(b)
	// Baseline: what the client and the echo endpoint alone cost per flow.
	direct := serve(b, func(c net.Conn) { _, _ = io.Copy(c, c) })
	measure := func(addr string, profile string) (heap, stack, goroutines float64) {
		bh, bs := inUse()
		bg := runtime.NumGoroutine()
		conns := make([]net.Conn, 0, flows)
		for range flows {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			if err := echoOnce(c); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		ah, as := inUse()
		ag := runtime.NumGoroutine()
		if profile != "" {
			writeHeapProfile(b, profile)
		}
		for _, c := range conns {
			_ = c.Close()
		}
		return float64(ah-bh) / flows, float64(as-bs) / flows, float64(ag-bg) / flows
	}
	for b.Loop() {
		baseHeap, baseStack, baseG := measure(direct, "")
		heap, stack, g := measure(f.echo, os.Getenv("BENCH_IDLE_HEAPPROFILE"))
		b.ReportMetric(g-baseG, "anyedge_goroutines/flow")
		b.ReportMetric(baseHeap+baseStack, "idle_endpoint_B/flow")
		b.ReportMetric(heap-baseHeap, "anyedge_heap_B/flow")
		b.ReportMetric(stack-baseStack, "anyedge_stack_B/flow")
		b.ReportMetric(heap+stack-baseHeap-baseStack, "anyedge_B/flow")
	}
}

// inUse returns the Go heap and stack in use after a collection.
func inUse() (heap, stack uint64) {
	// Several cycles: each one may halve the stack of an idle goroutine
	// that uses less than a quarter of it, as a long-lived flow would see.
	for range 5 {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	require.NoError(b, err)
	defer f.Close()
	runtime.GC()
	require.NoError(b, pprof.Lookup("heap").WriteTo(f, 0))
}
