package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/node"
	"github.com/anyedge/anyedge/internal/testport"
)

// observeDoc is one edge and one region with a TCP echo, a TCP sink and a
// UDP echo listener; %[9]s adds keys to the PoP (flow logs).
const observeDoc = `
accelerators:
  - name: bench
    ip_addresses: [127.0.0.1]
    listeners:
      - protocol: tcp
        port_ranges: [{from: %[1]d}]
        endpoint_groups:
          - region: region-bench
            health_check: {protocol: tcp, interval: 5s, timeout: 2s}
            endpoints: [{id: echo, address: "%[3]s"}]
      - protocol: tcp
        port_ranges: [{from: %[2]d}]
        endpoint_groups:
          - region: region-bench
            health_check: {protocol: tcp, interval: 5s, timeout: 2s}
            endpoints: [{id: sink, address: "%[4]s"}]
      - protocol: udp
        port_ranges: [{from: %[10]d}]
        endpoint_groups:
          - region: region-bench
            health_check: {protocol: tcp, port: %[12]d, interval: 5s, timeout: 2s}
            endpoints: [{id: udpecho, address: "%[11]s"}]
topology:
  pki_dir: %[5]s
  pops:
    - name: pop-bench
      admin: 127.0.0.1:%[6]d
%[9]s  regions:
    - name: region-bench
      admin: 127.0.0.1:%[7]d
      backbone: {listen: "127.0.0.1:%[8]d"}
`

// observed is one in-process fleet of the overhead benchmark.
type observed struct {
	echo, sink, udp, admin string
	// scrape, when set, is what reads /metrics and /status while load
	// runs (the observing side).
	scrape bool
}

// startObserved runs an edge and a region; with on, flow logs go to a file
// at sample rate 1 and a scraper reads /metrics and /status every second.
func startObserved(t *testing.T, on bool) observed {
	t.Helper()
	// The endpoints close after the client's FIN, so that flows end.
	echo := serve(t, func(c net.Conn) { _, _ = io.Copy(c, c); _ = c.Close() })
	sink := serve(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c); _ = c.Close() })
	health := serve(t, func(c net.Conn) { _ = c.Close() })
	_, hp, _ := net.SplitHostPort(health)
	udpEcho := udpEchoServer(t)
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Now()
	require.NoError(t, pki.InitCA(dir, time.Hour, now))
	require.NoError(t, pki.Issue(dir, "pop-bench", time.Hour, now))
	require.NoError(t, pki.Issue(dir, "region-bench", time.Hour, now))
	echoPort, sinkPort, udpPort, adminPort := testport.Port(t), testport.Port(t), testport.Port(t), testport.Port(t)
	extra := ""
	if on {
		extra = fmt.Sprintf("      flow_logs: {enabled: true, path: %q}\n", filepath.Join(t.TempDir(), "flows.log"))
	}
	healthPort, _ := strconv.Atoi(hp)
	doc, err := config.Load(fmt.Appendf(nil, observeDoc, echoPort, sinkPort, echo, sink, dir,
		adminPort, testport.Port(t), testport.Port(t), extra, udpPort, udpEcho, healthPort), config.LoadOptions{Env: []string{}})
	require.NoError(t, err)
	runNodes(t, func(string) node.Options { return node.Options{Doc: doc} })
	return observed{
		echo: fmt.Sprintf("127.0.0.1:%d", echoPort), sink: fmt.Sprintf("127.0.0.1:%d", sinkPort),
		udp: fmt.Sprintf("127.0.0.1:%d", udpPort), admin: fmt.Sprintf("127.0.0.1:%d", adminPort), scrape: on,
	}
}

func udpEchoServer(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { _ = c.Close(); <-done })
	return c.LocalAddr().String()
}

// scraping reads the fleet's /metrics and /status every second until the
// returned function is called (what Prometheus and the dashboard do, the
// first 15 times more often than its usual interval).
func (o observed) scraping() (stop func()) {
	if !o.scrape {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			for _, path := range []string{"/metrics", "/status"} {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+o.admin+path, nil)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// connRate runs workers that each connect, echo one byte and close, for d;
// it returns new connections per second.
func connRate(addr string, workers int, d time.Duration) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range workers {
		wg.Go(func() {
			for time.Now().Before(end) {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					continue
				}
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				if echoOnce(c) == nil {
					n.Add(1)
				}
				_ = c.Close()
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

// bulk writes to the sink over conns connections for d; it returns MB/s.
func bulk(addr string, conns int, d time.Duration) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range conns {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, 256<<10)
			for time.Now().Before(end) {
				_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				w, err := c.Write(buf)
				n.Add(int64(w))
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds() / 1e6
}

// udpRate runs flows UDP clients, each keeping window packets of 1200
// bytes in flight through the echo, for d; it returns packets per second
// that came back.
func udpRate(addr string, flows, window int, d time.Duration) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range flows {
		wg.Go(func() {
			c, err := net.Dial("udp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			p := make([]byte, 1200)
			buf := make([]byte, 2048)
			for range window {
				_, _ = c.Write(p)
			}
			for time.Now().Before(end) {
				_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := c.Read(buf); err == nil {
					n.Add(1)
				}
				_, _ = c.Write(p) // one out for each back (or each loss)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

// TestObservabilityOverhead measures new TCP connections per second, TCP
// throughput and UDP packets per second through an edge and a region with
// metrics and flow logs off (nobody scrapes, no flow log) and on (a scrape
// of /metrics and /status every second, every flow logged to a file), the
// two fleets side by side in one process and the runs interleaved. It
// prints a Markdown table for BENCHMARKS.md. Run it with bench/observe.sh.
func TestObservabilityOverhead(t *testing.T) {
	if os.Getenv("ANYEDGE_OBSERVE_BENCH") == "" {
		t.Skip("set ANYEDGE_OBSERVE_BENCH=1 (bench/observe.sh)")
	}
	secs, _ := strconv.Atoi(os.Getenv("ANYEDGE_OBSERVE_SECS"))
	if secs <= 0 {
		secs = 3
	}
	rounds, _ := strconv.Atoi(os.Getenv("ANYEDGE_OBSERVE_ROUNDS"))
	if rounds <= 0 {
		rounds = 5
	}
	d := time.Duration(secs) * time.Second
	fleets := map[bool]observed{false: startObserved(t, false), true: startObserved(t, true)}
	type key struct {
		what string
		on   bool
	}
	got := map[key][]float64{}
	measures := []struct {
		what string
		run  func(o observed) float64
	}{
		{"TCP connections/s (8 workers: connect, 1-byte echo, close)", func(o observed) float64 { return connRate(o.echo, 8, d) }},
		{"TCP throughput MB/s (4 connections to a sink)", func(o observed) float64 { return bulk(o.sink, 4, d) }},
		{"UDP packets/s echoed (16 flows × 8 in flight, 1200 B)", func(o observed) float64 { return udpRate(o.udp, 16, 8, d) }},
	}
	for r := range rounds {
		// Alternate which side goes first so that drift hits both alike.
		order := []bool{false, true}
		if r%2 == 1 {
			order = []bool{true, false}
		}
		for _, m := range measures {
			for _, on := range order {
				o := fleets[on]
				stop := o.scraping()
				v := m.run(o)
				stop()
				got[key{m.what, on}] = append(got[key{m.what, on}], v)
				t.Logf("round %d %s on=%v: %.1f", r, m.what, on, v)
			}
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	// Each round measures off and on back to back: the ratio within a
	// round cancels the machine's slow drift (other load), so its median
	// is the figure to read; the medians of each side are given too.
	var b strings.Builder
	fmt.Fprintf(&b, "| measure (%d rounds of %ds runs, off and on back to back) | off (median) | on (median) | on / off (median of the rounds' ratios) | rounds' ratios, min–max |\n|---|---|---|---|---|\n", rounds, secs)
	for _, m := range measures {
		offs, ons := got[key{m.what, false}], got[key{m.what, true}]
		var ratios []float64
		for i := range offs {
			if offs[i] > 0 {
				ratios = append(ratios, ons[i]/offs[i])
			}
		}
		if len(ratios) == 0 {
			ratios = []float64{0}
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.3f | %.3f–%.3f |\n", m.what, median(offs), median(ons), median(ratios), slices.Min(ratios), slices.Max(ratios))
	}
	t.Log("\n" + b.String())
	fmt.Println(b.String())
}
