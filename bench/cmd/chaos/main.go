// Command chaos runs an edge and two regions as processes on 127.0.0.1
// under a steady load — new TCP connections at a fixed rate, each one
// line echoed, and a few UDP flows — while it breaks things in turn:
// SIGKILL the preferred region and restart it, SIGSTOP it for 10 s,
// restart the edge (SIGTERM: a drain), and fill the disk where the edge
// writes flow logs (a small tmpfs; needs root). Per scenario it prints the
// connections that failed and those slower than -slow, the longest
// operation (no operation may outlast its timeout), the edge's memory and
// goroutines against their baseline, and every log line above warning.
//
//	chaos -bin ./anyedge -rate 50 -udp 4
//
// bench/chaos.sh runs it; the table goes to BENCHMARKS.md ("Chaos").
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/anyedge/anyedge/bench/internal/fleet"
)

func main() {
	bin := flag.String("bin", "anyedge", "the anyedge binary")
	rate := flag.Int("rate", 50, "new TCP connections per second")
	udpFlows := flag.Int("udp", 4, "UDP flows, one datagram every 100 ms each")
	timeout := flag.Duration("timeout", 2*time.Second, "a client operation's timeout")
	slow := flag.Duration("slow", 500*time.Millisecond, "a connection slower than this counts as slowed")
	flag.Parse()
	if err := run(*bin, *rate, *udpFlows, *timeout, *slow); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

// window counts the load's outcomes over a scenario.
type window struct {
	mu                   sync.Mutex
	tcp, failed, slowed  int
	longest              time.Duration
	udpSent, udpAnswered int
	firstErr             string
}

func (w *window) tcpDone(d time.Duration, err error, slow time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tcp++
	w.longest = max(w.longest, d)
	switch {
	case err != nil:
		w.failed++
		if w.firstErr == "" {
			w.firstErr = err.Error()
		}
	case d > slow:
		w.slowed++
	}
}

func run(bin string, rate, udpFlows int, timeout, slow time.Duration) error {
	dir, err := os.MkdirTemp("", "chaos")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logs := filepath.Join(dir, "flowlogs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		return err
	}
	tmpfs := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", logs).Run() == nil
	if tmpfs {
		defer exec.Command("umount", logs).Run()
	}
	ports, err := fleet.FreePorts(8)
	if err != nil {
		return err
	}
	tcpPort, udpPort, epPort, adminPoP, adminR1, adminR2, bb1, bb2 := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7]
	stopEndpoints, err := endpoints(epPort)
	if err != nil {
		return err
	}
	defer stopEndpoints()
	f, err := fleet.New(bin, dir, fmt.Sprintf(doc, tcpPort, epPort, epPort, epPort, udpPort, epPort, epPort, epPort, epPort,
		adminPoP, filepath.Join(logs, "flows.log"), adminR1, bb1, adminR2, bb2), "pop", "r1", "r2")
	if err != nil {
		return err
	}
	procs := map[string]*exec.Cmd{}
	start := func(role, node string) error {
		cmd, err := f.Start(role, node)
		procs[node] = cmd
		return err
	}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGCONT)
			_ = fleet.Stop(p, syscall.SIGINT)
		}
	}()
	for _, n := range []string{"r1", "r2"} {
		if err := start("region", n); err != nil {
			return err
		}
	}
	if err := start("edge", "pop"); err != nil {
		return err
	}
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPoP)
	if err := fleet.WaitReady(readyz, time.Minute); err != nil {
		return err
	}

	var cur atomic.Pointer[window]
	cur.Store(&window{})
	stop := make(chan struct{})
	var load sync.WaitGroup
	load.Go(func() { tcpLoad(stop, &cur, tcpPort, rate, timeout, slow) })
	for i := range udpFlows {
		load.Go(func() { udpLoad(stop, &cur, udpPort, i, timeout) })
	}
	defer func() { close(stop); load.Wait() }()

	time.Sleep(5 * time.Second) // warm up, then the baseline
	baseRSS, baseG := fleet.RSS(procs["pop"].Process.Pid), goroutines(adminPoP)
	type scenario struct {
		name  string
		fault func() error
	}
	scenarios := []scenario{
		{"none (baseline, 15 s)", func() error { time.Sleep(15 * time.Second); return nil }},
		{"SIGKILL the preferred region, restart it 3 s later", func() error {
			_ = procs["r1"].Process.Signal(syscall.SIGKILL)
			_ = procs["r1"].Wait()
			time.Sleep(3 * time.Second)
			if err := start("region", "r1"); err != nil {
				return err
			}
			time.Sleep(12 * time.Second)
			return nil
		}},
		{"SIGSTOP the preferred region for 10 s", func() error {
			_ = procs["r1"].Process.Signal(syscall.SIGSTOP)
			time.Sleep(10 * time.Second)
			_ = procs["r1"].Process.Signal(syscall.SIGCONT)
			time.Sleep(5 * time.Second)
			return nil
		}},
		{"restart the edge (SIGTERM: drain, exit; start again)", func() error {
			_ = fleet.Stop(procs["pop"], syscall.SIGTERM)
			if err := start("edge", "pop"); err != nil {
				return err
			}
			if err := fleet.WaitReady(readyz, time.Minute); err != nil {
				return err
			}
			time.Sleep(10 * time.Second)
			return nil
		}},
	}
	if tmpfs {
		scenarios = append(scenarios, scenario{"flow logs on a full disk (256 KiB tmpfs), 15 s", func() error {
			time.Sleep(15 * time.Second)
			return nil
		}})
	} else {
		fmt.Println("# full disk: skipped (mounting a tmpfs needs root)")
	}
	fmt.Printf("| scenario | TCP connections | failed | slowed (> %s) | longest | UDP answered | edge RSS after (baseline %.1f MiB) | edge goroutines after (baseline %d) |\n", slow, baseRSS, baseG)
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, sc := range scenarios {
		w := &window{}
		cur.Store(w)
		if err := sc.fault(); err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		cur.Store(&window{})
		time.Sleep(3 * time.Second) // settle before reading the edge
		w.mu.Lock()
		fmt.Printf("| %s | %d | %d | %d | %s | %d/%d | %.1f MiB | %d |\n", sc.name, w.tcp, w.failed, w.slowed,
			w.longest.Round(time.Millisecond), w.udpAnswered, w.udpSent, fleet.RSS(procs["pop"].Process.Pid), goroutines(adminPoP))
		if w.firstErr != "" {
			fmt.Printf("#   first failure: %s\n", w.firstErr)
		}
		if w.longest > timeout+time.Second {
			fmt.Printf("#   an operation outlasted its timeout (%s)\n", timeout)
		}
		w.mu.Unlock()
	}
	for _, n := range []string{"pop", "r1", "r2"} {
		b, _ := os.ReadFile(filepath.Join(dir, n+".log"))
		for _, l := range bytes.Split(b, []byte("\n")) {
			if bytes.Contains(l, []byte("level=ERROR")) || bytes.Contains(l, []byte("level=WARN")) {
				fmt.Printf("# %s: %s\n", n, l)
			}
		}
	}
	return nil
}

// tcpLoad opens rate connections per second, each one line echoed.
func tcpLoad(stop <-chan struct{}, cur *atomic.Pointer[window], port, rate int, timeout, slow time.Duration) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		w := cur.Load()
		wg.Go(func() {
			begin := time.Now()
			err := echoLine(addr, timeout)
			w.tcpDone(time.Since(begin), err, slow)
		})
	}
}

func echoLine(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "chaos\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err == nil && line != "chaos\n" {
		err = fmt.Errorf("echo %q", line)
	}
	return err
}

// udpLoad sends one datagram every 100 ms on one flow and counts replies.
func udpLoad(stop <-chan struct{}, cur *atomic.Pointer[window], port, i int, timeout time.Duration) {
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return
	}
	defer c.Close()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	b := make([]byte, 64)
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		w := cur.Load()
		msg := fmt.Sprintf("flow %d seq %d", i, n)
		_, _ = c.Write([]byte(msg))
		_ = c.SetReadDeadline(time.Now().Add(min(timeout, 90*time.Millisecond)))
		got := false
		for {
			k, err := c.Read(b)
			if err != nil {
				break
			}
			if string(b[:k]) == msg {
				got = true
				break
			}
		}
		w.mu.Lock()
		w.udpSent++
		if got {
			w.udpAnswered++
		}
		w.mu.Unlock()
	}
}

// endpoints serves a line echo (TCP) and a datagram echo (UDP) on
// 127.0.0.1 (region r1's) and 127.0.0.2 (r2's), port port.
func endpoints(port int) (func(), error) {
	var closers []io.Closer
	var wg sync.WaitGroup
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		addr := net.JoinHostPort(ip, fmt.Sprint(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		uc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, err
		}
		closers = append(closers, ln, uc)
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
			}
		})
		wg.Go(func() {
			b := make([]byte, 2048)
			for {
				k, from, err := uc.ReadFrom(b)
				if err != nil {
					return
				}
				_, _ = uc.WriteTo(b[:k], from)
			}
		})
	}
	return func() {
		for _, c := range closers {
			_ = c.Close()
		}
		wg.Wait()
	}, nil
}

// goroutines reads go_goroutines from a node's /metrics.
func goroutines(admin int) int {
	r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", admin))
	if err != nil {
		return -1
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		var n int
		if _, err := fmt.Sscanf(sc.Text(), "go_goroutines %d", &n); err == nil {
			return n
		}
	}
	return -1
}

// doc is the fleet: one edge, r1 preferred over r2, each with its own
// endpoints; flow logs under the (small) disk.
const doc = `accelerators:
  - name: chaos
    ip_addresses: [127.0.0.1]
    listeners:
      - protocol: tcp
        port_ranges: [{from: %d}]
        endpoint_groups:
          - region: r1
            preference: 1
            health_check: {protocol: tcp, port: %d, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}
            endpoints: [{id: t1, address: "127.0.0.1:%d"}]
          - region: r2
            preference: 2
            health_check: {protocol: tcp, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}
            endpoints: [{id: t2, address: "127.0.0.2:%d"}]
      - protocol: udp
        port_ranges: [{from: %d}]
        endpoint_groups:
          - region: r1
            preference: 1
            health_check: {protocol: tcp, port: %d, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}
            endpoints: [{id: u1, address: "127.0.0.1:%d"}]
          - region: r2
            preference: 2
            health_check: {protocol: tcp, port: %d, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}
            endpoints: [{id: u2, address: "127.0.0.2:%d"}]
topology:
  pki_dir: {{PKI}}
  pops:
    - name: pop
      admin: 127.0.0.1:%d
      drain: {bgp_grace: 1s, timeout: 5s}
      flow_logs: {enabled: true, path: %s}
  regions:
    - name: r1
      admin: 127.0.0.1:%d
      backbone: {listen: "127.0.0.1:%d"}
    - name: r2
      admin: 127.0.0.1:%d
      backbone: {listen: "127.0.0.1:%d"}
`
