package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// path is one way from the load generator to the server.
type path struct {
	key, name string
	bulkPort  int     // iperf3 port
	echoPort  int     // echo port (0: no latency tests)
	relays    []*proc // processes whose CPU is charged to the path
}

// results holds every run's figures, keyed by path key then metric.
type results map[string]map[string][]float64

func (rs results) add(path, metric string, v float64) {
	if rs[path] == nil {
		rs[path] = map[string][]float64{}
	}
	rs[path][metric] = append(rs[path][metric], v)
}

func (rs results) med(path, metric string) (float64, bool) {
	xs := rs[path][metric]
	if len(xs) == 0 {
		return 0, false
	}
	return median(xs), true
}

const anyedgeConfig = `# written by bench/cmd/benchrun
accelerators:
  - name: bench
    ip_addresses: [127.0.0.1]
    listeners:
      - protocol: tcp
        port_ranges: [{from: %[1]d}]
        endpoint_groups:
          - region: region-bench
            health_check: {protocol: tcp, port: %[4]d, interval: 5s, timeout: 2s}
            endpoints: [{id: iperf, address: "127.0.0.1:%[3]d"}]
      - protocol: tcp
        port_ranges: [{from: %[2]d}]
        endpoint_groups:
          - region: region-bench
            health_check: {protocol: tcp, interval: 5s, timeout: 2s}
            endpoints: [{id: echo, address: "127.0.0.1:%[4]d"}]
      - protocol: tcp
        port_ranges: [{from: %[9]d}]
        early_data: always
        endpoint_groups:
          - region: region-bench
            health_check: {protocol: tcp, interval: 5s, timeout: 2s}
            endpoints: [{id: echo-early, address: "127.0.0.1:%[4]d"}]
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

const haproxyConfig = `# written by bench/cmd/benchrun
global
    maxconn 8000
%[5]sdefaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend bulk
    bind 127.0.0.1:%[1]d
    default_backend bulk
backend bulk
    server next 127.0.0.1:%[2]d
frontend echo
    bind 127.0.0.1:%[3]d
    default_backend echo
backend echo
    server next 127.0.0.1:%[4]d
`

type ports struct {
	iperf, echo                   int
	edgeBulk, edgeEcho, edgeEarly int
	adminEdge, adminRegion, quic  int
	h1Bulk, h1Echo, h2Bulk        int
	h2Echo, qpServer, qpClient    int
	qeServer, qeClient            int
}

func allocPorts() (ports, error) {
	var p ports
	tcp := []*int{&p.iperf, &p.echo, &p.edgeBulk, &p.edgeEcho, &p.edgeEarly, &p.adminEdge, &p.adminRegion,
		&p.h1Bulk, &p.h1Echo, &p.h2Bulk, &p.h2Echo, &p.qpClient, &p.qeClient}
	udp := []*int{&p.quic, &p.qpServer, &p.qeServer}
	seen := map[string]bool{}
	for _, set := range []struct {
		network string
		ptrs    []*int
	}{{"tcp", tcp}, {"udp", udp}} {
		for _, ptr := range set.ptrs {
			for {
				n, err := freePort(set.network)
				if err != nil {
					return p, fmt.Errorf("free %s port: %w", set.network, err)
				}
				k := set.network + strconv.Itoa(n)
				if !seen[k] {
					seen[k] = true
					*ptr = n
					break
				}
			}
		}
	}
	return p, nil
}

func (r *runner) run(ctx context.Context) (string, error) {
	var err error
	r.dir, err = os.MkdirTemp("", "anyedge-bench-")
	if err != nil {
		return "", err
	}
	started := time.Now()
	load0 := loadavg()
	pt, err := allocPorts()
	if err != nil {
		return "", err
	}

	// Servers.
	iperfSrv, err := r.start("iperf3-server", nil, false, r.o.iperf3, "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(pt.iperf))
	if err != nil {
		return "", err
	}
	echo, err := r.start("echo", prefix("ready"), false, r.o.tcpprobe, "echo", "-listen", addr(pt.echo))
	if err != nil {
		return "", err
	}
	if _, err := waitFirst(ctx, echo, 10*time.Second); err != nil {
		return "", err
	}

	// anyedge: PKI, config, region, edge.
	pki := filepath.Join(r.dir, "pki")
	if err := r.sh(r.o.anyedge, "certs", "init", "--dir", pki); err != nil {
		return "", err
	}
	for _, n := range []string{"pop-bench", "region-bench"} {
		if err := r.sh(r.o.anyedge, "certs", "issue", "--dir", pki, "--node", n); err != nil {
			return "", err
		}
	}
	conf := filepath.Join(r.dir, "anyedge.yaml")
	doc := fmt.Sprintf(anyedgeConfig, pt.edgeBulk, pt.edgeEcho, pt.iperf, pt.echo, pki, pt.adminEdge, pt.adminRegion, pt.quic, pt.edgeEarly)
	if err := os.WriteFile(conf, []byte(doc), 0o644); err != nil {
		return "", err
	}
	if err := r.sh(r.o.anyedge, "validate", conf); err != nil {
		return "", err
	}
	region, err := r.start("anyedge-region", nil, false, r.o.anyedge, "region", "--config", conf, "--node", "region-bench", "--log-level", "info")
	if err != nil {
		return "", err
	}
	edge, err := r.start("anyedge-edge", nil, false, r.o.anyedge, "edge", "--config", conf, "--node", "pop-bench", "--log-level", "info")
	if err != nil {
		return "", err
	}

	// HAProxy: hop 1 → hop 2 → servers.
	var hops []*proc
	for i, hp := range [][4]int{{pt.h2Bulk, pt.iperf, pt.h2Echo, pt.echo}, {pt.h1Bulk, pt.h2Bulk, pt.h1Echo, pt.h2Echo}} {
		name := fmt.Sprintf("haproxy%d", 2-i)
		cf := filepath.Join(r.dir, name+".cfg")
		if err := os.WriteFile(cf, []byte(fmt.Sprintf(haproxyConfig, hp[0], hp[1], hp[2], hp[3], r.haproxyThreads())), 0o644); err != nil {
			return "", err
		}
		if err := r.sh(r.o.haproxy, "-c", "-q", "-f", cf); err != nil {
			return "", err
		}
		p, err := r.start(name, nil, false, r.o.haproxy, "-db", "-f", cf)
		if err != nil {
			return "", err
		}
		hops = append(hops, p)
	}

	// Bare quic-go relay pair.
	qps, err := r.start("quicpipe-server", prefix("ready"), false, r.o.quicpipe, "server", "-listen", addr(pt.qpServer), "-target", addr(pt.iperf))
	if err != nil {
		return "", err
	}
	if _, err := waitFirst(ctx, qps, 10*time.Second); err != nil {
		return "", err
	}
	qpc, err := r.start("quicpipe-client", prefix("ready"), false, r.o.quicpipe, "client", "-listen", addr(pt.qpClient),
		"-server", addr(pt.qpServer), "-conns", strconv.Itoa(r.o.quicConns))
	if err != nil {
		return "", err
	}
	if _, err := waitFirst(ctx, qpc, 15*time.Second); err != nil {
		return "", err
	}
	// A second pair in front of the echo server: the transport's floor for
	// new-connection latency.
	qes, err := r.start("quicpipe-echo-server", prefix("ready"), false, r.o.quicpipe, "server", "-listen", addr(pt.qeServer), "-target", addr(pt.echo))
	if err != nil {
		return "", err
	}
	if _, err := waitFirst(ctx, qes, 10*time.Second); err != nil {
		return "", err
	}
	qec, err := r.start("quicpipe-echo-client", prefix("ready"), false, r.o.quicpipe, "client", "-listen", addr(pt.qeClient),
		"-server", addr(pt.qeServer), "-conns", strconv.Itoa(r.o.quicConns))
	if err != nil {
		return "", err
	}
	if _, err := waitFirst(ctx, qec, 15*time.Second); err != nil {
		return "", err
	}
	if err := waitEcho(ctx, "bare quic-go echo pair", addr(pt.qeClient), 10*time.Second); err != nil {
		return "", err
	}

	if err := waitEcho(ctx, "haproxy two hops", addr(pt.h1Echo), 10*time.Second); err != nil {
		return "", err
	}
	if err := waitEcho(ctx, "anyedge edge → region", addr(pt.edgeEcho), 20*time.Second); err != nil {
		return "", err
	}
	// The iperf3 server is up once a short direct run succeeds.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := r.iperf(ctx, pt.iperf, 1, time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("iperf3 server not serving: %w", err)
		}
		if err := alive(iperfSrv); err != nil {
			return "", err
		}
		_ = sleep(ctx, 200*time.Millisecond)
	}
	r.logf("all up in %s (work dir %s)", time.Since(started).Round(time.Millisecond), r.dir)

	paths := []path{
		{key: "direct", name: "direct", bulkPort: pt.iperf, echoPort: pt.echo},
		{key: "haproxy", name: "HAProxy, 2 chained hops", bulkPort: pt.h1Bulk, echoPort: pt.h1Echo, relays: hops},
		{key: "anyedge", name: "anyedge edge → region", bulkPort: pt.edgeBulk, echoPort: pt.edgeEcho, relays: []*proc{edge, region}},
		{key: "early", name: "anyedge, `early_data: always`", echoPort: pt.edgeEarly, relays: []*proc{edge, region}},
		{key: "quic", name: "bare quic-go (quicpipe)", bulkPort: pt.qpClient, echoPort: pt.qeClient, relays: []*proc{qpc, qps}},
	}
	all := []*proc{iperfSrv, echo, region, edge, hops[0], hops[1], qps, qpc, qes, qec}
	checkAlive := func() error {
		for _, p := range all {
			if err := alive(p); err != nil {
				return err
			}
		}
		return nil
	}

	rs := results{}
	// 1. Bulk throughput and CPU per GB, interleaved.
	for run := 1; run <= r.o.runs && r.o.only != "conns"; run++ {
		for _, streams := range []int{1, 8} {
			for _, p := range paths {
				if p.bulkPort == 0 {
					continue
				}
				if err := checkAlive(); err != nil {
					return "", err
				}
				cpu0, err := cpuSeconds(p.relays)
				if err != nil {
					return "", err
				}
				res, err := r.iperf(ctx, p.bulkPort, streams, r.o.bulk)
				if err != nil && ctx.Err() == nil {
					// One retry, so that a single failure on a busy machine
					// is counted and shown rather than ending everything.
					r.logf("run %d bulk -P %d %s FAILED, retrying once: %v", run, streams, p.key, err)
					rs.add(p.key, "bulk_failures", 1)
					_ = sleep(ctx, time.Second)
					if cpu0, err = cpuSeconds(p.relays); err != nil {
						return "", err
					}
					res, err = r.iperf(ctx, p.bulkPort, streams, r.o.bulk)
				}
				if err != nil {
					return "", fmt.Errorf("bulk %s: %w", p.key, err)
				}
				cpu1, err := cpuSeconds(p.relays)
				if err != nil {
					return "", err
				}
				gbps := res.End.SumReceived.BitsPerSecond / 1e9
				m := "P" + strconv.Itoa(streams)
				rs.add(p.key, m+"_gbps", gbps)
				if len(p.relays) > 0 {
					rs.add(p.key, m+"_cpu_per_gb", (cpu1-cpu0)/(res.End.SumReceived.Bytes/1e9))
				}
				r.logf("run %d bulk -P %d %-8s %6.2f Gbit/s  relay CPU %.2f s", run, streams, p.key, gbps, cpu1-cpu0)
				_ = sleep(ctx, 300*time.Millisecond)
			}
		}
	}
	// 2. New connections, interleaved.
	for run := 1; run <= r.o.runs && r.o.only != "bulk"; run++ {
		for _, p := range paths {
			if p.echoPort == 0 {
				continue
			}
			if err := checkAlive(); err != nil {
				return "", err
			}
			var lat struct {
				N      int     `json:"n"`
				Errors int     `json:"errors"`
				P50    float64 `json:"p50_us"`
				P99    float64 `json:"p99_us"`
				P999   float64 `json:"p999_us"`
			}
			if err := r.probe(ctx, &lat, "latency", "-addr", addr(p.echoPort), "-n", strconv.Itoa(r.o.latencyN)); err != nil {
				return "", err
			}
			rs.add(p.key, "p50", lat.P50)
			rs.add(p.key, "p99", lat.P99)
			rs.add(p.key, "p999", lat.P999)
			rs.add(p.key, "lat_errors", float64(lat.Errors))
			_ = sleep(ctx, 300*time.Millisecond)
			var rate struct {
				Conns  int64   `json:"conns"`
				Errors int64   `json:"errors"`
				PerSec float64 `json:"per_sec"`
			}
			if err := r.probe(ctx, &rate, "rate", "-addr", addr(p.echoPort), "-workers", "64", "-duration", r.o.rateDur.String()); err != nil {
				return "", err
			}
			rs.add(p.key, "cps", rate.PerSec)
			rs.add(p.key, "cps_errors", float64(rate.Errors))
			r.logf("run %d conns %-8s p50 %.0f µs p99 %.0f µs p99.9 %.0f µs (%d errors); %.0f conns/s (%d errors)",
				run, p.key, lat.P50, lat.P99, lat.P999, lat.Errors, rate.PerSec, rate.Errors)
			// Let TIME_WAIT and the relays settle before the next path.
			_ = sleep(ctx, time.Second)
		}
	}
	// Profiles of anyedge, in runs of their own so that perf's overhead
	// stays out of the figures.
	var profs []profile
	if r.o.perf {
		anyedge := paths[2]
		prof, err := r.withPerf(ctx, "bulk", anyedge.relays, func() error {
			_, err := r.iperf(ctx, anyedge.bulkPort, 8, r.o.bulk)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("profile bulk: %w", err)
		}
		profs = append(profs, prof...)
		prof, err = r.withPerf(ctx, "connect", anyedge.relays, func() error {
			var rate struct{}
			return r.probe(ctx, &rate, "rate", "-addr", addr(anyedge.echoPort), "-workers", "64", "-duration", r.o.rateDur.String())
		})
		if err != nil {
			return "", fmt.Errorf("profile connections: %w", err)
		}
		profs = append(profs, prof...)
		r.logf("profiles recorded")
	}
	// 3. Memory of idle flows through anyedge.
	var mem *memResult
	if r.o.holdN > 0 && r.o.only == "" {
		if err := checkAlive(); err != nil {
			return "", err
		}
		mem, err = r.idleMemory(ctx, edge, region, addr(pt.edgeEcho))
		if err != nil {
			return "", err
		}
	}
	if err := checkAlive(); err != nil {
		return "", err
	}
	return r.report(rs, paths, mem, profs, r.anyedgeEvents(), started, load0), nil
}

type memResult struct {
	held, errors                                     int
	edgeBefore, edgeAfter, regionBefore, regionAfter int64
}

func (m *memResult) perFlow() float64 {
	return float64(m.edgeAfter-m.edgeBefore+m.regionAfter-m.regionBefore) / float64(max(1, m.held))
}

func (r *runner) idleMemory(ctx context.Context, edge, region *proc, target string) (*memResult, error) {
	var m memResult
	var err error
	if m.edgeBefore, err = rssKiB(edge.cmd.Process.Pid); err != nil {
		return nil, err
	}
	if m.regionBefore, err = rssKiB(region.cmd.Process.Pid); err != nil {
		return nil, err
	}
	h, err := r.start("hold", func(string) bool { return true }, true, r.o.tcpprobe,
		"hold", "-addr", target, "-n", strconv.Itoa(r.o.holdN), "-workers", "32")
	if err != nil {
		return nil, err
	}
	line, err := waitFirst(ctx, h, 3*time.Minute)
	if err != nil {
		return nil, err
	}
	var hr struct {
		Held   int `json:"held"`
		Errors int `json:"errors"`
	}
	if err := json.Unmarshal([]byte(line), &hr); err != nil {
		return nil, fmt.Errorf("hold: unexpected output %q: %w", line, err)
	}
	m.held, m.errors = hr.Held, hr.Errors
	if m.held < r.o.holdN*9/10 {
		return nil, fmt.Errorf("hold: only %d of %d flows established (%d errors; raise ulimit -n?)", m.held, r.o.holdN, m.errors)
	}
	// Let goroutines park and buffers settle.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	if m.edgeAfter, err = rssKiB(edge.cmd.Process.Pid); err != nil {
		return nil, err
	}
	if m.regionAfter, err = rssKiB(region.cmd.Process.Pid); err != nil {
		return nil, err
	}
	r.logf("idle flows: %d held (%d errors); edge RSS %d → %d KiB, region RSS %d → %d KiB; %.1f KiB/flow",
		m.held, m.errors, m.edgeBefore, m.edgeAfter, m.regionBefore, m.regionAfter, m.perFlow())
	_ = h.stdin.Close()
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
	return &m, nil
}

func prefix(p string) func(string) bool {
	return func(line string) bool { return strings.HasPrefix(line, p) }
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// anyedgeEvents counts the warnings and errors anyedge logged during the
// run, by message, so that the report shows lost backbone connections or
// failed flows next to the figures.
func (r *runner) anyedgeEvents() map[string]int {
	counts := map[string]int{}
	for _, name := range []string{"anyedge-edge", "anyedge-region"} {
		b, err := os.ReadFile(filepath.Join(r.dir, name+".log"))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
				continue
			}
			msg := line
			if _, after, ok := strings.Cut(line, ` msg="`); ok {
				msg, _, _ = strings.Cut(after, `"`)
			}
			counts[name+": "+msg]++
		}
	}
	return counts
}

// haproxyThreads is the nbthread line of the HAProxy hops: one thread each
// when -relay-procs is 1, HAProxy's default (one per CPU) otherwise.
func (r *runner) haproxyThreads() string {
	if r.o.relayProcs > 0 {
		return fmt.Sprintf("    nbthread %d\n", r.o.relayProcs)
	}
	return ""
}
