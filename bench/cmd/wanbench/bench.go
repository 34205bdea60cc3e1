//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anyedge/anyedge/internal/wanem"
	"github.com/anyedge/anyedge/internal/wanlab"
)

// Ports inside the lab (every namespace has its own port space).
const (
	portHTTP     = 8080
	portHTTPS    = 8443
	portStandin  = 9080
	portStandinS = 9443
	portBackbone = 4433
	// The second anyedge (path anyedge-nofec): FEC off at both ends, its
	// own listener ports (mapped to the endpoint's), backbone port and
	// admin ports, so the two are measured side by side in one run.
	portNoFEC         = 8180
	portNoFECS        = 8543
	portBackboneNoFEC = 4434
	portEdgeTLS       = 7443 // anyedge terminating TLS at the PoP (path anyedge-tls)
	accessRTT         = 5 * time.Millisecond
	variantBRatio     = 0.8
)

// env describes the machine and setup for the report.
type env struct {
	start            time.Time
	kernel, load     string
	bbr              bool
	anyedgeVersion   string
	connections      int
	discarded, total int
	acceptedLate     uint64
	// failures lists the downloads that failed; dir, where the process
	// logs are kept when there were any.
	failures []string
	dir      string
	keptLate int
}

type bench struct {
	o     options
	log   io.Writer
	dir   string
	lab   *wanlab.Lab
	procs []*proc
	// edges are the anyedge edge processes, by path, with their command
	// lines: restartEdges starts them again after the lab's conditions
	// change.
	edges map[string]edgeProc
	env   env
	// keep: a measurement failed; close leaves the work directory (the
	// processes' logs) for the post-mortem.
	keep bool
}

type edgeProc struct {
	p    *proc
	args []string
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func newBench(ctx context.Context, o options, log io.Writer) (_ *bench, err error) {
	if err := wanlab.Available(); err != nil {
		return nil, err
	}
	for _, tool := range []string{o.anyedge, o.haproxy, o.curl} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s: %w", tool, err)
		}
	}
	dir, err := os.MkdirTemp("", "wanbench-")
	if err != nil {
		return nil, err
	}
	b := &bench{o: o, log: log, dir: dir, env: env{dir: dir}}
	b.env.start = time.Now().UTC()
	b.env.connections = o.connections
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		b.env.kernel = strings.TrimSpace(string(out))
	}
	if out, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.env.load = strings.Join(strings.Fields(string(out))[:3], " ")
	}
	if out, err := exec.Command(o.anyedge, "version").Output(); err == nil {
		b.env.anyedgeVersion = strings.TrimSpace(string(out))
	}
	defer func() {
		if err != nil {
			_ = b.close()
		}
	}()
	rate := o.rateMbit * 1_000_000
	b.lab, err = wanlab.Up(wanlab.Config{
		Name: fmt.Sprintf("wb%d", os.Getpid()), Realtime: true, TCPMaxBuffer: 32 << 20,
		Internet: wanlab.Symmetric(wanem.Params{RateBits: rate}),
		Access:   wanlab.Symmetric(wanem.Params{Delay: accessRTT / 2, RateBits: rate}),
		Backbone: wanlab.Symmetric(wanem.Params{RateBits: rate}),
	})
	if err != nil {
		return nil, err
	}
	if avail, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control"); err == nil &&
		strings.Contains(string(avail), "bbr") {
		// BBR for the stand-in's backbone TCP connections only: a route
		// attribute on the backbone /30 at both ends.
		b.env.bbr = true
		for _, e := range []struct {
			role string
			src  string
		}{{wanlab.PoP, wanlab.PoPBackbone.String()}, {wanlab.Region, wanlab.RegionBackbone.String()}} {
			if err := b.lab.IP(e.role, "route", "replace", "198.18.3.0/30", "dev", wanlab.Backbone,
				"proto", "kernel", "scope", "link", "src", e.src, "congctl", "bbr"); err != nil {
				return nil, err
			}
		}
	}
	if err := b.startEndpoint(); err != nil {
		return nil, err
	}
	if err := b.startAnyedge(); err != nil {
		return nil, err
	}
	if err := b.startStandin(); err != nil {
		return nil, err
	}
	for _, p := range b.o.paths {
		if err := b.waitUp(ctx, p); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (b *bench) start(role, name string, args ...string) (*proc, error) {
	logPath := filepath.Join(b.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := b.lab.Command(role, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	b.procs = append(b.procs, p)
	return p, nil
}

func (b *bench) startEndpoint() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	_, err = b.start(wanlab.Endpoint, "endpoint", self, "serve",
		"-http", fmt.Sprintf(":%d", portHTTP), "-https", fmt.Sprintf(":%d", portHTTPS))
	return err
}

const anyedgeConfig = `# written by bench/cmd/wanbench
accelerators:
  - name: wan
    ip_addresses: [%[1]s]
    listeners:
      - protocol: tcp
        port_ranges: [{from: %[2]d}, {from: %[3]d}]
        endpoint_groups:
          - region: %[9]s
            health_check: {protocol: tcp, interval: 5s, timeout: 2s}
            endpoints: [{id: web, address: "%[4]s"}]
            port_overrides: [{listener_port: %[2]d, endpoint_port: %[10]d}, {listener_port: %[3]d, endpoint_port: %[11]d}]
%[15]stopology:
  pki_dir: %[5]s
  pops:
    - name: %[8]s
      admin: 127.0.0.1:%[12]d
      backbone: {fec: %[14]s%[7]s}
  regions:
    - name: %[9]s
      admin: 127.0.0.1:%[13]d
      backbone: {listen: "%[6]s", fec: %[14]s}
`

// anyedgeStack is one edge and one region of anyedge.
type anyedgeStack struct {
	pop, region           string
	http, https, backbone int
	popAdmin, regionAdmin int
	fec                   string
}

var anyedgeStacks = map[string]anyedgeStack{
	"anyedge": {pop: "pop", region: "region", http: portHTTP, https: portHTTPS, backbone: portBackbone,
		popAdmin: 9180, regionAdmin: 9181, fec: "auto"},
	"anyedge-nofec": {pop: "pop2", region: "region2", http: portNoFEC, https: portNoFECS, backbone: portBackboneNoFEC,
		popAdmin: 9190, regionAdmin: 9191, fec: "off"},
}

// tlsListener is the listener of path anyedge-tls, in the anyedge stack:
// TLS terminated at the PoP, the endpoint's plain HTTP port behind it.
const tlsListener = `      - protocol: tcp
        port_ranges: [{from: %[1]d}]
        tls: {certificates: [{cert_file: "%[2]s", key_file: "%[3]s"}], alpn: [http/1.1]}
        endpoint_groups:
          - region: %[4]s
            health_check: {protocol: tcp, interval: 5s, timeout: 2s}
            endpoints: [{id: web-tls, address: "%[5]s:%[6]d"}]
`

// startAnyedge starts the anyedge stack of each anyedge path measured
// (anyedge-tls is a listener of the anyedge stack).
func (b *bench) startAnyedge() error {
	pki := filepath.Join(b.dir, "pki")
	sh := func(args ...string) error {
		out, err := exec.Command(b.o.anyedge, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("anyedge %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := sh("certs", "init", "--dir", pki); err != nil {
		return err
	}
	for _, path := range []string{"anyedge", "anyedge-nofec"} {
		st := anyedgeStacks[path]
		tls := path == "anyedge" && slices.Contains(b.o.paths, "anyedge-tls")
		if !slices.Contains(b.o.paths, path) && !tls {
			continue
		}
		extraListener := ""
		if tls {
			certFile, keyFile := filepath.Join(b.dir, "edge.crt"), filepath.Join(b.dir, "edge.key")
			if err := writeSelfSigned(certFile, keyFile); err != nil {
				return err
			}
			extraListener = fmt.Sprintf(tlsListener, portEdgeTLS, certFile, keyFile, st.region, wanlab.EndpointLocal, portHTTP)
		}
		for _, n := range []string{st.pop, st.region} {
			if err := sh("certs", "issue", "--dir", pki, "--node", n); err != nil {
				return err
			}
		}
		popExtra := ""
		if b.o.connections > 0 {
			popExtra = fmt.Sprintf(", connections: %d", b.o.connections)
		}
		if b.o.popExtra != "" {
			popExtra += ", " + b.o.popExtra
		}
		if path == "anyedge-nofec" && b.o.nofecExtra != "" {
			popExtra += ", " + b.o.nofecExtra
		}
		conf := filepath.Join(b.dir, path+".yaml")
		doc := fmt.Sprintf(anyedgeConfig, wanlab.PoPAccess, st.http, st.https, wanlab.EndpointLocal,
			pki, fmt.Sprintf("%s:%d", wanlab.RegionBackbone, st.backbone), popExtra, st.pop, st.region,
			portHTTP, portHTTPS, st.popAdmin, st.regionAdmin, st.fec, extraListener)
		if err := os.WriteFile(conf, []byte(doc), 0o644); err != nil {
			return err
		}
		if err := sh("validate", conf); err != nil {
			return err
		}
		if _, err := b.start(wanlab.Region, path+"-region", b.o.anyedge, "region", "--config", conf, "--node", st.region, "--log-level", b.o.logLevel); err != nil {
			return err
		}
		args := []string{b.o.anyedge, "edge", "--config", conf, "--node", st.pop, "--log-level", b.o.logLevel}
		p, err := b.start(wanlab.PoP, path+"-edge", args...)
		if err != nil {
			return err
		}
		if b.edges == nil {
			b.edges = map[string]edgeProc{}
		}
		b.edges[path] = edgeProc{p: p, args: args}
	}
	return nil
}

const haproxyConfig = `# written by bench/cmd/wanbench
global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend http
    bind %[1]s:%[2]d
    default_backend http
backend http
    server next %[3]s:%[4]d
frontend https
    bind %[1]s:%[5]d
    default_backend https
backend https
    server next %[3]s:%[6]d
`

func (b *bench) startStandin() error {
	for _, h := range []struct {
		role, name, bind, next string
		nextHTTP, nextHTTPS    int
	}{
		{wanlab.Region, "haproxy-region", wanlab.RegionBackbone.String(), wanlab.EndpointLocal.String(), portHTTP, portHTTPS},
		{wanlab.PoP, "haproxy-pop", wanlab.PoPAccess.String(), wanlab.RegionBackbone.String(), portStandin, portStandinS},
	} {
		cf := filepath.Join(b.dir, h.name+".cfg")
		doc := fmt.Sprintf(haproxyConfig, h.bind, portStandin, h.next, h.nextHTTP, portStandinS, h.nextHTTPS)
		if err := os.WriteFile(cf, []byte(doc), 0o644); err != nil {
			return err
		}
		if _, err := b.start(h.role, h.name, b.o.haproxy, "-db", "-f", cf); err != nil {
			return err
		}
	}
	return nil
}

// url is what the client fetches on path p. anyedge-tls, which
// terminates TLS at the PoP, serves HTTPS only.
func url(p string, tls bool, size int64) string {
	host, port := wanlab.EndpointInternet.String(), portHTTP
	switch p {
	case "anyedge", "anyedge-nofec":
		host, port = wanlab.PoPAccess.String(), anyedgeStacks[p].http
	case "standin":
		host, port = wanlab.PoPAccess.String(), portStandin
	case "anyedge-tls":
		return fmt.Sprintf("https://%s:%d/blob?size=%d", wanlab.PoPAccess, portEdgeTLS, size)
	}
	scheme := "http"
	if tls {
		scheme = "https"
		port += portHTTPS - portHTTP
	}
	return fmt.Sprintf("%s://%s:%d/blob?size=%d", scheme, host, port, size)
}

// fetch is one curl from the client namespace.
type fetch struct {
	total, ttfb time.Duration
	size        int64
	timedOut    bool
}

func (b *bench) fetch(ctx context.Context, u string, timeout time.Duration) (fetch, error) {
	args := []string{b.o.curl, "-s", "-k", "-o", "/dev/null", "--max-time", strconv.FormatFloat(timeout.Seconds(), 'f', 1, 64),
		"-w", "%{time_total} %{time_starttransfer} %{size_download} %{http_code}", u}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", b.lab.NS(wanlab.Client)}, args...)...)
	out, err := cmd.Output()
	var f fetch
	fields := strings.Fields(string(out))
	if len(fields) != 4 {
		return f, fmt.Errorf("curl %s: %v: %q", u, err, out)
	}
	tt, _ := strconv.ParseFloat(fields[0], 64)
	tf, _ := strconv.ParseFloat(fields[1], 64)
	f.total, f.ttfb = time.Duration(tt*1e9), time.Duration(tf*1e9)
	f.size, _ = strconv.ParseInt(fields[2], 10, 64)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 28 {
		f.timedOut = true
		f.total = timeout
		return f, nil
	}
	if err != nil || fields[3] != "200" {
		return f, fmt.Errorf("curl %s: %v: %q", u, err, out)
	}
	return f, ctx.Err()
}

// restartEdges stops every anyedge edge and starts it again, so that its
// backbone connections are dialled over the path as the lab now has it. A
// connection set up before the backbone's delay was raised keeps the old,
// near-zero minimum RTT for its life; quic-go's slow start (HyStart) then
// ends at the first round trip, and the window grows one packet per round
// trip from about 64 KB (BENCHMARKS.md, "One flow on a clean backbone").
// The direct path and the stand-in open fresh connections for each
// download, so they never carry such a connection. gi names the logs.
func (b *bench) restartEdges(ctx context.Context, gi int) error {
	for _, path := range slices.Sorted(maps.Keys(b.edges)) {
		e := b.edges[path]
		_ = e.p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.p.done:
		case <-time.After(5 * time.Second):
			_ = e.p.cmd.Process.Kill()
			<-e.p.done
		}
		p, err := b.start(wanlab.PoP, fmt.Sprintf("%s-edge-%d", path, gi), e.args...)
		if err != nil {
			return err
		}
		b.edges[path] = edgeProc{p: p, args: e.args}
	}
	for _, p := range b.o.paths {
		if strings.HasPrefix(p, "anyedge") {
			if err := b.waitUp(ctx, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitUp polls path p until a small fetch succeeds.
func (b *bench) waitUp(ctx context.Context, p string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := b.fetch(ctx, url(p, false, 1), 5*time.Second)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s path not up: %w (logs in %s)", p, err, b.dir)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (b *bench) close() error {
	for _, p := range b.procs {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range b.procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	var err error
	if b.lab != nil {
		err = b.lab.Close()
	}
	switch {
	case b.keep || len(b.env.failures) > 0:
		fmt.Fprintf(b.log, "wanbench: logs kept in %s\n", b.dir)
	case err == nil:
		_ = os.RemoveAll(b.dir)
	}
	return err
}

// tail returns the last lines of a process log, for errors.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// countRetired says how many backbone connections each anyedge edge
// retired (its log's "retiring backbone connection" lines): with
// -stale-pools, whether the pools replaced their stale connections.
func (b *bench) countRetired(w io.Writer) {
	for _, path := range slices.Sorted(maps.Keys(b.edges)) {
		data, err := os.ReadFile(b.edges[path].p.log)
		if err != nil {
			fmt.Fprintf(w, "  %s: %v\n", path, err)
			continue
		}
		fmt.Fprintf(w, "  %s edge: %d backbone connections retired\n", path,
			bytes.Count(data, []byte("retiring backbone connection")))
	}
}
