// Command benchrun runs the TCP backbone benchmarks of BENCHMARKS.md side
// by side: iperf3 bulk throughput (1 and 8 connections) through nothing,
// two chained HAProxy hops, anyedge edge → region and a bare quic-go relay
// pair (bench/cmd/quicpipe); connect + 1-byte echo latency and connections
// per second (bench/cmd/tcpprobe) through the first three; CPU seconds per
// GB of every relay; and resident memory of 10,000 idle flows through
// anyedge. Every measurement is repeated -runs times, interleaved across the
// paths (A B C D A B C D …), and the median is reported.
//
// It is normally started by bench/run.sh, which builds the binaries. Every
// process it starts is killed by PID when it returns, on SIGINT/SIGTERM,
// and (through PR_SET_PDEATHSIG) if benchrun itself dies.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	anyedge, quicpipe, tcpprobe, iperf3, haproxy string
	quicConns, relayProcs                        int
	runs                                         int
	bulk, rateDur                                time.Duration
	latencyN, holdN                              int
	out, note                                    string
	keep, perf                                   bool
	only                                         string
}

func main() {
	var o options
	flag.StringVar(&o.anyedge, "anyedge", "", "anyedge binary (required)")
	flag.StringVar(&o.quicpipe, "quicpipe", "", "quicpipe binary (required)")
	flag.StringVar(&o.tcpprobe, "tcpprobe", "", "tcpprobe binary (required)")
	flag.StringVar(&o.iperf3, "iperf3", "iperf3", "iperf3 binary")
	flag.StringVar(&o.haproxy, "haproxy", "haproxy", "haproxy binary")
	flag.IntVar(&o.quicConns, "quic-conns", 4, "QUIC connections of the bare quic-go pair (anyedge's default pool size is 4)")
	flag.IntVar(&o.runs, "runs", 3, "interleaved runs per measurement (median reported)")
	flag.DurationVar(&o.bulk, "bulk", 5*time.Second, "duration of one iperf3 run")
	flag.DurationVar(&o.rateDur, "rate", 5*time.Second, "duration of one connections/s run")
	flag.IntVar(&o.latencyN, "latency-n", 2000, "sequential connections per latency run")
	flag.IntVar(&o.holdN, "hold", 10000, "idle flows for the memory measurement (0 skips it)")
	flag.StringVar(&o.out, "out", "", "write the Markdown report here too")
	flag.StringVar(&o.note, "note", "", "free-text machine note for the report")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs)")
	flag.IntVar(&o.relayProcs, "relay-procs", 0, "run every relay process (anyedge edge and region, quicpipe, each HAProxy hop) on this many threads: GOMAXPROCS for the Go relays, nbthread for HAProxy (0: their defaults)")
	flag.BoolVar(&o.perf, "perf", false, "profile edge and region with perf during the first anyedge bulk (8 conns) and connection-rate runs")
	flag.StringVar(&o.only, "only", "", `measure only this part: "conns" (new connections: latency and rate), "bulk"; empty: everything`)
	flag.Parse()
	if o.anyedge == "" || o.quicpipe == "" || o.tcpprobe == "" {
		fmt.Fprintln(os.Stderr, "benchrun: -anyedge, -quicpipe and -tcpprobe are required")
		os.Exit(2)
	}
	if o.only != "" && o.only != "conns" && o.only != "bulk" {
		fmt.Fprintln(os.Stderr, `benchrun: -only must be "conns" or "bulk"`)
		os.Exit(2)
	}
	// PR_SET_PDEATHSIG is tied to the thread that started the child.
	runtime.LockOSThread()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &runner{o: o}
	report, err := r.run(ctx)
	r.cleanup()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted (%w)", err)
		}
		fmt.Fprintln(os.Stderr, "benchrun: FAILED:", err)
		if r.dir != "" {
			fmt.Fprintln(os.Stderr, "benchrun: logs kept in", r.dir)
		}
		os.Exit(1)
	}
	if !o.keep {
		_ = os.RemoveAll(r.dir)
	} else {
		fmt.Fprintln(os.Stderr, "benchrun: work directory kept:", r.dir)
	}
	fmt.Print(report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "benchrun:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "benchrun: report written to", o.out)
	}
}

// proc is one child process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	first  chan string // first stdout line matching the ready prefix
	exited chan struct{}
	stdin  io.WriteCloser
}

type runner struct {
	o   options
	dir string
	// mu guards procs.
	mu    sync.Mutex
	procs []*proc
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchrun: "+format+"\n", args...)
}

// start runs a child with its output in dir/name.log. When ready is not
// nil it is matched against stdout lines and the first match is delivered
// on proc.first.
func (r *runner) start(name string, ready func(string) bool, wantStdin bool, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(r.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if r.o.relayProcs > 0 && (strings.HasPrefix(name, "anyedge") || strings.HasPrefix(name, "quicpipe")) {
		cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", r.o.relayProcs))
	}
	cmd.Stderr = logf
	p := &proc{name: name, cmd: cmd, first: make(chan string, 1), exited: make(chan struct{})}
	var stdout io.ReadCloser
	if ready != nil {
		stdout, err = cmd.StdoutPipe()
		if err != nil {
			_ = logf.Close()
			return nil, err
		}
	} else {
		cmd.Stdout = logf
	}
	if wantStdin {
		p.stdin, err = cmd.StdinPipe()
		if err != nil {
			_ = logf.Close()
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	var readers sync.WaitGroup
	if stdout != nil {
		readers.Go(func() {
			sc := bufio.NewScanner(stdout)
			sent := false
			for sc.Scan() {
				line := sc.Text()
				fmt.Fprintln(logf, line)
				if !sent && ready(line) {
					p.first <- line
					sent = true
				}
			}
		})
	}
	go func() {
		readers.Wait()
		_ = cmd.Wait()
		_ = logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// waitFirst waits for p's ready line.
func waitFirst(ctx context.Context, p *proc, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line := <-p.first:
		return line, nil
	case <-p.exited:
		return "", fmt.Errorf("%s exited before it was ready (see %s.log)", p.name, p.name)
	case <-t.C:
		return "", fmt.Errorf("%s not ready after %s (see %s.log)", p.name, timeout, p.name)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// cleanup stops every child by PID: SIGINT (anyedge edge drains on
// SIGTERM but stops at once on SIGINT), then SIGKILL after 5 s.
func (r *runner) cleanup() {
	r.mu.Lock()
	procs := slices.Clone(r.procs)
	r.mu.Unlock()
	// Reverse start order: clients of a server stop before it.
	for _, p := range slices.Backward(procs) {
		if p.stdin != nil {
			_ = p.stdin.Close()
		}
		_ = p.cmd.Process.Signal(syscall.SIGINT)
	}
	deadline := time.After(5 * time.Second)
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
}

func alive(p *proc) error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s has exited (see %s.log)", p.name, p.name)
	default:
		return nil
	}
}

// freePort returns a port that was free on 127.0.0.1 for network ("tcp"
// or "udp") a moment ago.
func freePort(network string) (int, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// echoOnce connects to a, sends one byte and reads it back.
func echoOnce(a string) error {
	c, err := net.DialTimeout("tcp", a, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	b := [1]byte{'r'}
	if _, err := c.Write(b[:]); err != nil {
		return err
	}
	_, err = io.ReadFull(c, b[:])
	return err
}

// waitEcho polls an echo path until one byte comes back.
func waitEcho(ctx context.Context, what, a string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := echoOnce(a)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (%s) does not echo after %s: %w", what, a, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cpuTicks returns utime+stime of pid in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return ut + st, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

func cpuSeconds(ps []*proc) (float64, error) {
	var sum int64
	for _, p := range ps {
		t, err := cpuTicks(p.cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return float64(sum) / clockTicks, nil
}

// rssKiB returns VmRSS of pid.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// iperfResult is the part of iperf3 --json we read.
type iperfResult struct {
	End struct {
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

func (r *runner) iperf(ctx context.Context, port, streams int, d time.Duration) (iperfResult, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, r.o.iperf3, "-c", "127.0.0.1", "-p", strconv.Itoa(port),
		"-t", strconv.Itoa(secs), "-P", strconv.Itoa(streams), "-J")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	var res iperfResult
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		return res, fmt.Errorf("iperf3 -p %d -P %d: %w (output not JSON: %v)", port, streams, err, jerr)
	}
	if res.Error != "" {
		return res, fmt.Errorf("iperf3 -p %d -P %d: %s", port, streams, res.Error)
	}
	if err != nil {
		return res, fmt.Errorf("iperf3 -p %d -P %d: %w", port, streams, err)
	}
	if res.End.SumReceived.Bytes <= 0 {
		return res, fmt.Errorf("iperf3 -p %d -P %d: no bytes received", port, streams)
	}
	return res, nil
}

// probe runs tcpprobe with args and decodes its JSON output into v.
func (r *runner) probe(ctx context.Context, v any, args ...string) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, r.o.tcpprobe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("tcpprobe %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("tcpprobe %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func (r *runner) sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// profile is the top of one perf profile.
type profile struct {
	name, top string
}

// withPerf runs fn while perf samples each of ps (one profile per process)
// and returns the top entries by self time. Without -perf it only runs fn.
func (r *runner) withPerf(ctx context.Context, what string, ps []*proc, fn func() error) ([]profile, error) {
	if !r.o.perf {
		return nil, fn()
	}
	var recs []*proc
	var files []string
	for _, p := range ps {
		f := filepath.Join(r.dir, what+"-"+p.name+".perf.data")
		rec, err := r.start("perf-"+what+"-"+p.name, nil, false, "perf", "record", "-F", "999", "-g", "-o", f,
			"-p", strconv.Itoa(p.cmd.Process.Pid))
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
		files = append(files, f)
	}
	_ = sleep(ctx, 500*time.Millisecond)
	ferr := fn()
	for _, rec := range recs {
		_ = rec.cmd.Process.Signal(syscall.SIGINT)
	}
	for _, rec := range recs {
		select {
		case <-rec.exited:
		case <-time.After(30 * time.Second):
			_ = rec.cmd.Process.Kill()
			<-rec.exited
		}
	}
	if ferr != nil {
		return nil, ferr
	}
	var out []profile
	for i, f := range files {
		cmd := exec.Command("perf", "report", "-i", f, "--stdio", "--no-children", "-g", "none",
			"--sort", "sym", "--fields", "overhead,sym", "--percent-limit", "1.5")
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("perf report %s: %w", f, err)
		}
		var lines []string
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
				continue
			}
			lines = append(lines, strings.TrimRight(line, " "))
		}
		// perf lists by symbol when asked for these fields: sort by share.
		pct := func(l string) float64 {
			f, _ := strconv.ParseFloat(strings.TrimSuffix(strings.Fields(l)[0], "%"), 64)
			return f
		}
		slices.SortStableFunc(lines, func(a, b string) int { return cmp.Compare(pct(b), pct(a)) })
		lines = lines[:min(len(lines), 20)]
		out = append(out, profile{name: what + ", " + ps[i].name, top: strings.Join(lines, "\n")})
	}
	return out, nil
}
