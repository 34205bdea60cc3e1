//go:build linux

// Command wanbench is `make bench-wan`: 10 MB downloads (and HTTP and
// HTTPS time to first byte) over an emulated WAN, direct, through anyedge
// and through a split-TCP stand-in (HAProxy at the PoP and at the region, a
// fresh backbone TCP connection per client, BBR on the backbone when the
// kernel has it), side by side in one run, medians of interleaved runs.
//
// It builds the lab of internal/wanlab in its own process (the emulator's
// loops run there, at real-time priority), starts the endpoint (its own
// `serve` subcommand), `anyedge region`, `anyedge edge` and two HAProxy
// processes inside the namespaces, and drives curl from the client
// namespace. Every process is stopped by PID and the lab removed at the
// end, on error and on SIGINT/SIGTERM. A run during which the emulator sent
// any packet more than 1 ms late is discarded and repeated.
//
// The matrix: internet RTT × internet loss for the direct path; RTT ×
// backbone loss × variant (A: backbone as long as the internet path, B:
// 0.8× as long) for the accelerated paths; every link 200 Mbit/s, the
// client 5 ms (RTT) from its PoP, the region next to the endpoint.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		h := fs.String("http", ":8080", "HTTP listen address")
		s := fs.String("https", ":8443", "HTTPS listen address")
		_ = fs.Parse(os.Args[2:])
		if err := serve(*h, *s); err != nil {
			fmt.Fprintln(os.Stderr, "wanbench serve:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "plot" {
		// wanbench plot REPORT.json…: draw a report's figures again.
		for _, f := range os.Args[2:] {
			r, err := readResults(f)
			if err == nil {
				var files []string
				files, err = r.plots(strings.TrimSuffix(f, ".json"))
				fmt.Println(strings.Join(files, "\n"))
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "wanbench plot:", err)
				os.Exit(1)
			}
		}
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	anyedge, haproxy, curl string
	out, rawOut            string
	runs, tries, maxLate   int
	size                   int64
	timeout                time.Duration
	rtts                   []time.Duration
	inetLoss, bbLoss       []float64
	variants               []string
	paths                  []string
	ttfb, download         bool
	rateMbit               int64
	connections            int
	popExtra, nofecExtra   string
	note                   string
	logLevel               string
	// stalePools: the edges are not restarted after a group's conditions
	// are set; settle is waited instead.
	stalePools bool
	settle     time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wanbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var rtts, inet, bb, variants, paths string
	fs.StringVar(&o.anyedge, "anyedge", "", "the anyedge binary (required)")
	fs.StringVar(&o.haproxy, "haproxy", "haproxy", "the haproxy binary")
	fs.StringVar(&o.curl, "curl", "curl", "the curl binary")
	fs.StringVar(&o.out, "out", "", "write the Markdown report here too")
	fs.IntVar(&o.runs, "runs", 5, "runs per cell (medians are reported)")
	fs.IntVar(&o.tries, "tries", 5, "attempts per run when the emulator was late")
	fs.IntVar(&o.maxLate, "max-late", 0, "late packets (sent > 1 ms after due) a run may have and still count; 0 is strict")
	fs.Int64Var(&o.size, "size", 10_000_000, "download size in bytes")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "give up on one download after this long (recorded as the timeout)")
	fs.StringVar(&rtts, "rtt", "50ms,200ms,400ms", "internet round-trip times")
	fs.StringVar(&inet, "internet-loss", "0,1,3", "internet loss, percent per direction")
	fs.StringVar(&bb, "backbone-loss", "0,0.1,1", "backbone loss, percent per direction")
	fs.StringVar(&variants, "variants", "A,B", "backbone length: A = as long as the internet path, B = 0.8×")
	fs.StringVar(&paths, "paths", "direct,standin,anyedge,anyedge-nofec,anyedge-tls",
		"paths to measure: direct, standin, anyedge, anyedge-nofec (a second anyedge with FEC off at both ends), "+
			"anyedge-tls (TLS terminated at the PoP; HTTPS time to first byte only)")
	fs.BoolVar(&o.ttfb, "ttfb", true, "also measure HTTP and HTTPS time to first byte (fresh connection each)")
	fs.BoolVar(&o.download, "download", true, "measure the download; false: time to first byte only (TTFB mode)")
	fs.Int64Var(&o.rateMbit, "rate-mbit", 200, "rate of every emulated link")
	fs.IntVar(&o.connections, "connections", 0, "backbone connections per region for anyedge (0: anyedge's default)")
	fs.StringVar(&o.popExtra, "pop-backbone", "", "more keys for both anyedge stacks' PoP backbone, YAML flow style (e.g. \"stripe_lanes: 1\")")
	fs.StringVar(&o.nofecExtra, "nofec-pop-backbone", "", "more keys for the anyedge-nofec stack's PoP backbone only (side-by-side experiments)")
	fs.StringVar(&o.note, "note", "", "a line for the report saying what was measured")
	fs.BoolVar(&o.stalePools, "stale-pools", false, "do not restart the anyedge edges after setting a group's conditions: "+
		"their pools keep the connections dialled over the previous conditions (a route change under a running edge); "+
		"wait -settle instead (retirement of such connections: topology.pops[].backbone.retire)")
	fs.DurationVar(&o.settle, "settle", 20*time.Second, "with -stale-pools, how long the idle edges get after the conditions change")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level of anyedge region and edge (their logs are kept when a measurement fails)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if o.rtts, err = durations(rtts); err == nil {
		if o.inetLoss, err = floats(inet); err == nil {
			o.bbLoss, err = floats(bb)
		}
	}
	o.variants, o.paths = strings.Split(variants, ","), strings.Split(paths, ",")
	for _, p := range o.paths {
		if _, ok := pathNames[p]; !ok && err == nil {
			err = fmt.Errorf("unknown path %q", p)
		}
	}
	if err == nil && o.anyedge == "" {
		err = errors.New("-anyedge is required")
	}
	if err == nil && !o.download && !o.ttfb {
		err = errors.New("-download=false needs -ttfb")
	}
	if err != nil {
		fmt.Fprintln(stderr, "wanbench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := newBench(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "wanbench:", err)
		return 1
	}
	res, err := b.measure(ctx)
	b.keep = err != nil
	if o.stalePools {
		b.countRetired(stderr)
	}
	closeErr := b.close()
	if err != nil {
		fmt.Fprintln(stderr, "wanbench:", err)
		return 1
	}
	if closeErr != nil {
		fmt.Fprintln(stderr, "wanbench: cleanup:", closeErr)
	}
	report := res.markdown(o, b.env)
	fmt.Fprint(stdout, report)
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err == nil {
			err = os.WriteFile(o.out, []byte(report), 0o644)
		}
		if err == nil {
			err = res.writeJSON(strings.TrimSuffix(o.out, ".md") + ".json")
		}
		if err == nil && o.download {
			_, err = res.plots(strings.TrimSuffix(o.out, ".md"))
		}
		if err != nil {
			fmt.Fprintln(stderr, "wanbench:", err)
			return 1
		}
	}
	return 0
}

func durations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("rtt %q: %w", f, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func floats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 || v > 100 {
			return nil, fmt.Errorf("loss %q: want a percentage", f)
		}
		out = append(out, v)
	}
	return out, nil
}
