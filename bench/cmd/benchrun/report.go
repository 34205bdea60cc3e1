package main

import (
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Targets of issue 3.
const (
	targetThroughputOfQUIC = 0.80 // of the bare quic-go figure
	targetCPUPerGB         = 4.5  // CPU seconds per GB
	targetP50us            = 300.0
	targetCPS              = 8000.0
	targetKiBPerFlow       = 16.0
)

// Targets of issue 14.
const (
	targetP50usNew  = 600.0
	targetCPSOfQUIC = 1.5 // of the bare quicpipe relay's connections/s
)

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func (r *runner) report(rs results, paths []path, mem *memResult, profs []profile, events map[string]int, started time.Time, load0 string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	num := func(p, m, format string) string {
		v, ok := rs.med(p, m)
		if !ok {
			return "—"
		}
		return fmt.Sprintf(format, v)
	}
	ratio := func(p1, p2, m string) string {
		a, ok1 := rs.med(p1, m)
		c, ok2 := rs.med(p2, m)
		if !ok1 || !ok2 || c == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", a/c)
	}
	yes := func(ok bool) string {
		if ok {
			return "**met**"
		}
		return "**not met**"
	}

	w("## TCP backbone — %s\n\n", started.UTC().Format("2006-01-02 15:04 UTC"))
	w("Machine: %d CPUs (%s), Linux %s, %s; loopback only; load average before the run %s, after %s.\n",
		runtime.NumCPU(), cpuModel(), kernel(), runtime.Version(), load0, loadavg())
	if r.o.relayProcs > 0 {
		w("Relays pinned to %d thread(s) each: GOMAXPROCS=%[1]d for anyedge and quicpipe, nbthread %[1]d for each HAProxy hop.\n", r.o.relayProcs)
	}
	if r.o.note != "" {
		w("Note: %s\n", r.o.note)
	}
	w("Medians of %d interleaved runs (A B C D A B C D …); iperf3 runs of %s, connection-rate runs of %s, %d sequential connections per latency run. Took %s.\n\n",
		r.o.runs, r.o.bulk, r.o.rateDur, r.o.latencyN, time.Since(started).Round(time.Second))

	if r.o.only != "conns" {
		r.reportBulk(w, rs, paths, num, ratio)
	}
	if r.o.only != "bulk" {
		r.reportConns(w, rs, paths, num, ratio)
	}
	if mem != nil {
		w("\n### Idle TCP flows through anyedge\n\n")
		w("%d flows held open (each echoed one byte end to end; %d failed): edge VmRSS %d → %d KiB, region VmRSS %d → %d KiB: **%.1f KiB per flow** (edge + region).\n",
			mem.held, mem.errors, mem.edgeBefore, mem.edgeAfter, mem.regionBefore, mem.regionAfter, mem.perFlow())
	}
	r.reportTargets(w, rs, mem, yes)
	if len(events) > 0 {
		keys := slices.Sorted(maps.Keys(events))
		w("\n**anyedge logged warnings or errors during the run:**\n\n")
		for _, k := range keys {
			w("- %s (%d×)\n", k, events[k])
		}
	}

	for _, p := range profs {
		w("\n<details><summary>perf profile: %s (self time, top entries)</summary>\n\n```\n%s\n```\n\n</details>\n", p.name, p.top)
	}

	w("\n<details><summary>Every run</summary>\n\n| path | metric | runs |\n|---|---|---|\n")
	for _, p := range paths {
		for _, m := range []string{"P1_gbps", "P8_gbps", "P1_cpu_per_gb", "P8_cpu_per_gb", "p50", "p99", "p999", "cps"} {
			xs := rs[p.key][m]
			if len(xs) == 0 {
				continue
			}
			var parts []string
			for _, x := range xs {
				parts = append(parts, fmt.Sprintf("%.2f", x))
			}
			w("| %s | %s | %s |\n", p.key, m, strings.Join(parts, ", "))
		}
	}
	w("\n</details>\n")
	return b.String()
}

func (r *runner) reportBulk(w func(string, ...any), rs results, paths []path, num func(p, m, format string) string, ratio func(p1, p2, m string) string) {
	w("### Bulk throughput (iperf3) and relay CPU\n\n")
	w("| path | Gbit/s, 1 conn | Gbit/s, 8 conns | relay CPU s/GB, 1 conn | relay CPU s/GB, 8 conns |\n")
	w("|---|--:|--:|--:|--:|\n")
	for _, p := range paths {
		if p.bulkPort == 0 {
			continue
		}
		w("| %s | %s | %s | %s | %s |\n", p.name,
			num(p.key, "P1_gbps", "%.2f"), num(p.key, "P8_gbps", "%.2f"),
			num(p.key, "P1_cpu_per_gb", "%.2f"), num(p.key, "P8_cpu_per_gb", "%.2f"))
	}
	w("\nThe bare quic-go pair spreads its streams over %d QUIC connection(s), like anyedge's pool. ", r.o.quicConns)
	w("Relay CPU is utime+stime of the relay processes (HAProxy: both hops; anyedge: edge and region; quicpipe: client and server) from /proc/PID/stat around each run, divided by the GB iperf3 received; iperf3's own CPU is not counted.\n\n")
	for _, p := range paths {
		if n := len(rs[p.key]["bulk_failures"]); n > 0 {
			w("**%s: %d iperf3 run(s) failed and were retried once.**\n\n", p.name, n)
		}
	}
	w("| ratio | 1 conn | 8 conns |\n|---|--:|--:|\n")
	for _, c := range []struct{ name, other string }{{"anyedge / direct", "direct"}, {"anyedge / bare quic-go", "quic"}, {"anyedge / HAProxy", "haproxy"}} {
		w("| %s | %s | %s |\n", c.name, ratio("anyedge", c.other, "P1_gbps"), ratio("anyedge", c.other, "P8_gbps"))
	}

}

func (r *runner) reportConns(w func(string, ...any), rs results, paths []path, num func(p, m, format string) string, ratio func(p1, p2, m string) string) {
	w("\n### New connections (connect + 1-byte echo)\n\n")
	w("| path | p50 µs | p99 µs | p99.9 µs | conns/s, 64 workers | errors (latency / rate) |\n")
	w("|---|--:|--:|--:|--:|--:|\n")
	for _, p := range paths {
		if p.echoPort == 0 {
			continue
		}
		le, _ := rs.med(p.key, "lat_errors")
		ce, _ := rs.med(p.key, "cps_errors")
		w("| %s | %s | %s | %s | %s | %.0f / %.0f |\n", p.name,
			num(p.key, "p50", "%.0f"), num(p.key, "p99", "%.0f"), num(p.key, "p999", "%.0f"), num(p.key, "cps", "%.0f"), le, ce)
	}
	w("\n| ratio | p50 | p99 | conns/s |\n|---|--:|--:|--:|\n")
	for _, c := range []struct{ name, self, other string }{
		{"anyedge / direct", "anyedge", "direct"}, {"anyedge / bare quic-go", "anyedge", "quic"}, {"anyedge / HAProxy", "anyedge", "haproxy"},
		{"anyedge early / anyedge", "early", "anyedge"}, {"anyedge early / bare quic-go", "early", "quic"}, {"anyedge early / HAProxy", "early", "haproxy"},
	} {
		w("| %s | %s | %s | %s |\n", c.name, ratio(c.self, c.other, "p50"), ratio(c.self, c.other, "p99"), ratio(c.self, c.other, "cps"))
	}
	w("\nWith held delivery (a region of this version) the default `early_data: tls` sends the 1-byte plain-text probe with the flow's header, delivered once; the `early_data: always` listener differs only in also hedging across regions with it.\n")
}

func (r *runner) reportTargets(w func(string, ...any), rs results, mem *memResult, yes func(bool) string) {
	w("\n### Targets (issue 3)\n\n| target | measured | |\n|---|---|---|\n")
	for _, m := range []string{"P1", "P8"} {
		a, ok1 := rs.med("anyedge", m+"_gbps")
		q, ok2 := rs.med("quic", m+"_gbps")
		if ok1 && ok2 && q > 0 {
			w("| throughput ≥ 80 %% of bare quic-go (%s conn) | %.0f %% | %s |\n", strings.TrimPrefix(m, "P"), 100*a/q, yes(a/q >= targetThroughputOfQUIC))
		}
	}
	for _, m := range []string{"P1", "P8"} {
		if v, ok := rs.med("anyedge", m+"_cpu_per_gb"); ok {
			w("| ≤ 4.5 CPU-s per GB (%s conn) | %.2f | %s |\n", strings.TrimPrefix(m, "P"), v, yes(v <= targetCPUPerGB))
		}
	}
	if v, ok := rs.med("anyedge", "p50"); ok {
		w("| connect + echo p50 < 300 µs | %.0f µs | %s |\n", v, yes(v < targetP50us))
	}
	if v, ok := rs.med("anyedge", "cps"); ok {
		w("| ≥ 8,000 conns/s, 64 workers | %.0f | %s |\n", v, yes(v >= targetCPS))
	}
	if v, ok := rs.med("early", "p50"); ok {
		w("| connect + echo p50 < 300 µs, early data | %.0f µs | %s |\n", v, yes(v < targetP50us))
	}
	if v, ok := rs.med("early", "cps"); ok {
		w("| ≥ 8,000 conns/s, 64 workers, early data | %.0f | %s |\n", v, yes(v >= targetCPS))
	}
	if mem != nil {
		w("| < 16 KiB per idle flow | %.1f KiB | %s |\n", mem.perFlow(), yes(mem.perFlow() < targetKiBPerFlow))
	}
	w("\n### Targets (issue 14: a faster new-connection path)\n\n| target | measured | |\n|---|---|---|\n")
	if v, ok := rs.med("anyedge", "p50"); ok {
		w("| connect + echo p50 ≤ 600 µs | %.0f µs | %s |\n", v, yes(v <= targetP50usNew))
	}
	a, ok1 := rs.med("anyedge", "cps")
	q, ok2 := rs.med("quic", "cps")
	if ok1 && ok2 && q > 0 {
		w("| conns/s ≥ 1.5 × bare quic-go's in the same run | %.0f / %.0f = %.2f× | %s |\n", a, q, a/q, yes(a/q >= targetCPSOfQUIC))
	}
}
