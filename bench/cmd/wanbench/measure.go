//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/anyedge/anyedge/internal/wanem"
	"github.com/anyedge/anyedge/internal/wanlab"
)

// job is one thing measured: a path under one emulation. For the direct
// path Loss is the internet's and Variant is empty; for the accelerated
// paths Loss is the backbone's.
type job struct {
	Path    string        `json:"path"`
	RTT     time.Duration `json:"rtt"`
	Loss    float64       `json:"loss_pct"`
	Variant string        `json:"variant,omitempty"`
}

func (j job) String() string {
	if j.Variant == "" {
		return fmt.Sprintf("%s rtt=%v loss=%g%%", j.Path, j.RTT, j.Loss)
	}
	return fmt.Sprintf("%s rtt=%v backbone=%s loss=%g%%", j.Path, j.RTT, j.Variant, j.Loss)
}

// sample is one run of a job.
type sample struct {
	Download float64 `json:"download_s"`
	TimedOut bool    `json:"timed_out,omitempty"`
	// Failed: every try of the run failed (counted as the timeout).
	Failed bool `json:"failed,omitempty"`
	// Late: the emulator was late in every try; this is the last.
	Late      bool    `json:"late,omitempty"`
	HTTPTTFB  float64 `json:"http_ttfb_s,omitempty"`
	HTTPSTTFB float64 `json:"https_ttfb_s,omitempty"`
}

type results struct {
	Jobs    []job               `json:"jobs"`
	Samples map[string][]sample `json:"samples"` // by job.String()
	Late    map[string]int      `json:"discarded_late"`
	index   map[string]job
}

// groups lists the jobs by emulated condition: each direct job alone
// (internet RTT and loss), and the stand-in and anyedge together for each
// backbone (RTT, variant, loss). A group is measured as a block — warm-up,
// then its runs interleaved path by path — so that every cell is measured
// in the steady state of its own condition: anyedge's pooled connections
// carry their congestion state from one flow to the next, so jumping
// between loss levels run by run would measure the previous cell's losses.
func (b *bench) groups() [][]job {
	var gs [][]job
	for _, rtt := range b.o.rtts {
		if slices.Contains(b.o.paths, "direct") {
			for _, l := range b.o.inetLoss {
				gs = append(gs, []job{{Path: "direct", RTT: rtt, Loss: l}})
			}
		}
		for _, v := range b.o.variants {
			for _, l := range b.o.bbLoss {
				var g []job
				for _, p := range b.o.paths {
					if p != "direct" {
						g = append(g, job{Path: p, RTT: rtt, Loss: l, Variant: v})
					}
				}
				if len(g) > 0 {
					gs = append(gs, g)
				}
			}
		}
	}
	return gs
}

// apply sets the emulation for j.
func (b *bench) apply(j job) error {
	rate := b.o.rateMbit * 1_000_000
	if j.Path == "direct" {
		return b.lab.Set(wanlab.Internet, wanlab.Symmetric(wanem.Params{Delay: j.RTT / 2, Loss: j.Loss / 100, RateBits: rate}))
	}
	d := j.RTT / 2
	if j.Variant == "B" {
		d = time.Duration(float64(d) * variantBRatio)
	}
	return b.lab.Set(wanlab.Backbone, wanlab.Symmetric(wanem.Params{Delay: d, Loss: j.Loss / 100, RateBits: rate}))
}

// measure runs every group: the condition is set, each path of the group
// downloads once unrecorded (warm-up), then o.runs rounds of one run per
// path.
func (b *bench) measure(ctx context.Context) (*results, error) {
	gs := b.groups()
	res := &results{Samples: map[string][]sample{}, Late: map[string]int{}}
	for gi, g := range gs {
		if err := b.apply(g[0]); err != nil {
			return nil, err
		}
		if b.o.stalePools {
			fmt.Fprintf(b.log, "  stale pools: edges kept, %v to settle\n", b.o.settle)
			select {
			case <-time.After(b.o.settle):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		} else if err := b.restartEdges(ctx, gi); err != nil {
			return nil, err
		}
		for _, j := range g {
			res.Jobs = append(res.Jobs, j)
			size := b.o.size
			if !b.o.download || j.Path == "anyedge-tls" {
				size = 1
			}
			if _, err := b.fetch(ctx, url(j.Path, false, size), b.o.timeout); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				// Counted and reported; the runs that follow tell whether
				// the path works.
				b.env.failures = append(b.env.failures, fmt.Sprintf("warm-up %v: %v", j, err))
				fmt.Fprintf(b.log, "  warm-up %v failed: %v\n", j, err)
			}
		}
		for r := range b.o.runs {
			for _, j := range g {
				s, err := b.one(ctx, j, res)
				if err != nil {
					return nil, fmt.Errorf("%v: %w", j, err)
				}
				res.Samples[j.String()] = append(res.Samples[j.String()], s)
				fmt.Fprintf(b.log, "group %d/%d run %d/%d %v: %.2f s%s ttfb %.0f/%.0f ms\n", gi+1, len(gs), r+1, b.o.runs, j,
					s.Download, map[bool]string{true: " (timed out)"}[s.TimedOut], s.HTTPTTFB*1e3, s.HTTPSTTFB*1e3)
			}
		}
	}
	return res, nil
}

// one measures j once, repeating the run while the emulator was late.
func (b *bench) one(ctx context.Context, j job, res *results) (sample, error) {
	for try := 1; ; try++ {
		b.env.total++
		late := b.lab.Late()
		var s sample
		if b.o.download && j.Path != "anyedge-tls" {
			f, err := b.fetch(ctx, url(j.Path, false, b.o.size), b.o.timeout)
			if err == nil && f.size != b.o.size && !f.timedOut {
				err = fmt.Errorf("downloaded %d bytes of %d", f.size, b.o.size)
			}
			if err != nil {
				// A failed download (the path reset the client) is a
				// finding, not the end of the matrix: it is reported, the
				// run repeated, and after o.tries failures recorded as a
				// failed run (the cell's median then says so).
				if ctx.Err() != nil {
					return s, ctx.Err()
				}
				b.env.failures = append(b.env.failures, fmt.Sprintf("%v try %d: %v", j, try, err))
				fmt.Fprintf(b.log, "  %v: download failed: %v\n", j, err)
				if try >= b.o.tries {
					return sample{Download: b.o.timeout.Seconds(), TimedOut: true, Failed: true}, nil
				}
				continue
			}
			s.Download, s.TimedOut = f.total.Seconds(), f.timedOut
		}
		if b.o.ttfb {
			for _, tls := range []bool{false, true} {
				if !tls && j.Path == "anyedge-tls" {
					continue // it serves HTTPS only
				}
				f, err := b.fetch(ctx, url(j.Path, tls, 1), b.o.timeout)
				if err != nil {
					return s, err
				}
				if tls {
					s.HTTPSTTFB = f.ttfb.Seconds()
				} else {
					s.HTTPTTFB = f.ttfb.Seconds()
				}
			}
		}
		if n := b.lab.Late() - late; n <= uint64(b.o.maxLate) {
			b.env.acceptedLate += n
			return s, nil
		}
		b.env.discarded++
		res.Late[j.String()]++
		fmt.Fprintf(b.log, "  %v: the emulator was late (%d packets); run discarded\n", j, b.lab.Late()-late)
		if try >= b.o.tries {
			// Kept, flagged and counted rather than ending the matrix:
			// lateness only adds delay, so the run is an upper bound.
			b.env.keptLate++
			s.Late = true
			fmt.Fprintf(b.log, "  %v: the emulator was late in %d tries in a row; the last run is kept, flagged\n", j, try)
			return s, nil
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (r *results) med(j job, f func(sample) float64) (float64, bool, bool) {
	ss := r.Samples[j.String()]
	if len(ss) == 0 {
		return 0, false, false
	}
	xs := make([]float64, len(ss))
	timedOut := false
	for i, s := range ss {
		xs[i] = f(s)
		timedOut = timedOut || s.TimedOut
	}
	return median(xs), timedOut, true
}

func (r *results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func dl(s sample) float64 { return s.Download }

// markdown renders the report: one row per matrix cell, then TTFB.
func (r *results) markdown(o options, e env) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# WAN benchmark %s\n\n", e.start.Format("2006-01-02 15:04 UTC"))
	if o.note != "" {
		fmt.Fprintf(&sb, "%s\n\n", o.note)
	}
	fmt.Fprintf(&sb, "Kernel %s, load average before %s, %s. %d MB downloads, medians of %d interleaved runs; "+
		"every link %d Mbit/s, client %v (RTT) from its PoP; stand-in backbone congestion control: %s; "+
		"anyedge backbone connections per region: %s. Runs discarded because the emulator sent more than %d packets late (> 1 ms): %d of %d; "+
		"late packets in the runs kept: %d.\n\n",
		e.kernel, e.load, e.anyedgeVersion, o.size/1_000_000, o.runs, o.rateMbit, accessRTT,
		map[bool]string{true: "BBR", false: "kernel default (no BBR)"}[e.bbr],
		map[bool]string{true: "default", false: fmt.Sprint(e.connections)}[e.connections == 0], o.maxLate, e.discarded, e.total, e.acceptedLate)
	if e.keptLate > 0 {
		fmt.Fprintf(&sb, "**Runs kept although the emulator was late in all %d tries: %d** (lateness only adds delay: "+
			"these runs are upper bounds; `late` in the raw samples).\n\n", o.tries, e.keptLate)
	}
	if len(e.failures) > 0 {
		fmt.Fprintf(&sb, "**Failed downloads: %d** (each try repeated, up to %d; the process logs are kept in %s):\n\n",
			len(e.failures), o.tries, e.dir)
		for _, f := range e.failures {
			fmt.Fprintf(&sb, "- %s\n", f)
		}
		sb.WriteString("\n")
	}
	if o.download {
		r.downloads(&sb, o)
	}
	if o.ttfb {
		r.ttfbTables(&sb, o)
	}
	return sb.String()
}

// pathNames are the paths' names in reports.
var pathNames = map[string]string{
	"direct": "direct", "standin": "stand-in", "anyedge": "anyedge", "anyedge-nofec": "anyedge no FEC",
	"anyedge-tls": "anyedge TLS at the PoP",
}

// downloads renders the download table: each path's median, each
// accelerated path's ratio to direct, anyedge's to the stand-in and to
// anyedge without FEC.
func (r *results) downloads(sb *strings.Builder, o options) {
	fmt.Fprintf(sb, "Ratios are accelerated time / direct time (lower is better); `>` marks a median that includes a run cut at the %v timeout.\n\n", o.timeout)
	var accel []string
	for _, p := range o.paths {
		if p != "direct" && p != "anyedge-tls" { // anyedge-tls: time to first byte only
			accel = append(accel, p)
		}
	}
	pairs := [][2]string{}
	for _, q := range []string{"standin", "anyedge-nofec"} {
		if slices.Contains(o.paths, "anyedge") && slices.Contains(o.paths, q) {
			pairs = append(pairs, [2]string{"anyedge", q})
		}
	}
	sb.WriteString("| internet RTT | internet loss | backbone | backbone loss | direct s |")
	for _, p := range accel {
		fmt.Fprintf(sb, " %s s |", pathNames[p])
	}
	for _, p := range accel {
		fmt.Fprintf(sb, " %s / direct |", pathNames[p])
	}
	for _, pq := range pairs {
		fmt.Fprintf(sb, " %s / %s |", pathNames[pq[0]], pathNames[pq[1]])
	}
	sb.WriteString("\n|---|--:|---|--:|--:|" + strings.Repeat("--:|", 2*len(accel)+len(pairs)) + "\n")
	cell := func(j job) (string, float64, bool) {
		v, to, ok := r.med(j, dl)
		if !ok {
			return "—", 0, false
		}
		p := ""
		if to {
			p = ">"
		}
		return fmt.Sprintf("%s%.2f", p, v), v, true
	}
	ratio := func(a, b float64, oka, okb bool) string {
		if !oka || !okb || b == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	for _, rtt := range o.rtts {
		for _, il := range o.inetLoss {
			for _, v := range o.variants {
				for _, bl := range o.bbLoss {
					ds, dv, dok := cell(job{Path: "direct", RTT: rtt, Loss: il})
					bbLen := rtt
					if v == "B" {
						bbLen = time.Duration(float64(rtt) * variantBRatio)
					}
					fmt.Fprintf(sb, "| %v | %g %% | %s (%v) | %g %% | %s |", rtt, il, v, bbLen, bl, ds)
					vals := map[string]float64{}
					oks := map[string]bool{}
					for _, p := range accel {
						s, val, ok := cell(job{Path: p, RTT: rtt, Loss: bl, Variant: v})
						vals[p], oks[p] = val, ok
						fmt.Fprintf(sb, " %s |", s)
					}
					for _, p := range accel {
						fmt.Fprintf(sb, " %s |", ratio(vals[p], dv, oks[p], dok))
					}
					for _, pq := range pairs {
						fmt.Fprintf(sb, " %s |", ratio(vals[pq[0]], vals[pq[1]], oks[pq[0]], oks[pq[1]]))
					}
					sb.WriteString("\n")
				}
			}
		}
	}
}

// ttfbTables renders every job's time to first byte, then each
// accelerated path beside direct with its ratio and, for plain HTTP, the
// warm-pool floor: the client's TCP handshake and request over the access
// link (2 × its RTT) plus one backbone round trip.
func (r *results) ttfbTables(sb *strings.Builder, o options) {
	http := func(s sample) float64 { return s.HTTPTTFB }
	https := func(s sample) float64 { return s.HTTPSTTFB }
	sb.WriteString("\nTime to first byte of a 1-byte object over a fresh connection (curl `time_starttransfer`), medians, ms:\n\n")
	sb.WriteString("| internet RTT | path | backbone | loss | HTTP | HTTPS |\n|---|---|---|--:|--:|--:|\n")
	for _, j := range r.Jobs {
		h, _, ok := r.med(j, http)
		hs, _, _ := r.med(j, https)
		if ok {
			hcol := "—"
			if h > 0 {
				hcol = fmt.Sprintf("%.0f", h*1e3)
			}
			fmt.Fprintf(sb, "| %v | %s | %s | %g %% | %s | %.0f |\n", j.RTT, j.Path, j.Variant, j.Loss, hcol, hs*1e3)
		}
	}
	sb.WriteString("\nSide by side (ratio = path / direct, lower is better). The floors are the least a relay with a warm " +
		"backbone can take: plain HTTP 2 × access RTT + backbone RTT (TCP handshake and request to the PoP, the request's " +
		"round trip over the backbone); HTTPS 3 × access RTT + 2 × backbone RTT when TLS goes through to the endpoint " +
		"(the handshake's and the request's round trips cross the backbone), 3 × access RTT + backbone RTT when the PoP " +
		"terminates it (anyedge-tls).\n\n")
	sb.WriteString("| internet RTT | internet loss | path | backbone | backbone loss | HTTP ms | direct HTTP ms | HTTP ratio | HTTP floor ms | HTTP above floor ms | HTTPS ms | direct HTTPS ms | HTTPS ratio | HTTPS floor ms | HTTPS above floor ms |\n")
	sb.WriteString("|---|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, rtt := range o.rtts {
		for _, il := range o.inetLoss {
			d := job{Path: "direct", RTT: rtt, Loss: il}
			dh, _, dok := r.med(d, http)
			dhs, _, _ := r.med(d, https)
			for _, p := range o.paths {
				if p == "direct" {
					continue
				}
				for _, v := range o.variants {
					for _, bl := range o.bbLoss {
						j := job{Path: p, RTT: rtt, Loss: bl, Variant: v}
						h, _, ok := r.med(j, http)
						hs, _, _ := r.med(j, https)
						if !ok || !dok || dh == 0 || dhs == 0 {
							continue
						}
						bb := rtt
						if v == "B" {
							bb = time.Duration(float64(rtt) * variantBRatio)
						}
						httpCols := "— | — | — | — | —"
						if h > 0 {
							floor := (2*accessRTT + bb).Seconds()
							httpCols = fmt.Sprintf("%.1f | %.1f | %.2f | %.0f | %+.1f", h*1e3, dh*1e3, h/dh, floor*1e3, (h-floor)*1e3)
						}
						tlsFloor := (3*accessRTT + 2*bb).Seconds()
						if p == "anyedge-tls" {
							tlsFloor = (3*accessRTT + bb).Seconds()
						}
						fmt.Fprintf(sb, "| %v | %g %% | %s | %s (%v) | %g %% | %s | %.1f | %.1f | %.2f | %.0f | %+.1f |\n",
							rtt, il, p, v, bb, bl, httpCols, hs*1e3, dhs*1e3, hs/dhs, tlsFloor*1e3, (hs-tlsFloor)*1e3)
					}
				}
			}
		}
	}
}
