// Command soak runs `anyedge dev` under a steady load for a long time and
// reports, every interval, the process's resident memory, goroutines, open
// descriptors and threads, with the load's successes and failures, so that
// a leak shows as a trend. It is not part of CI: bench/soak.sh runs it.
//
//	soak -bin ./anyedge -config soak.yaml -duration 30m -every 1m -tcp-rate 50 -udp-flows 8
//
// The config must be the quickstart's shape (an HTTP demo on the TCP
// listener, a DNS demo on the UDP one); bench/soak.sh moves its ports out
// of the way of a quickstart running at the same time.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	bin := flag.String("bin", "anyedge", "the anyedge binary")
	duration := flag.Duration("duration", 30*time.Minute, "how long to run")
	every := flag.Duration("every", time.Minute, "time between samples")
	tcpRate := flag.Int("tcp-rate", 50, "new TCP connections per second (one HTTP request each)")
	udpFlows := flag.Int("udp-flows", 8, "UDP flows, each one DNS query every 100 ms")
	config := flag.String("config", "", "config for anyedge dev (default: the quickstart)")
	flag.StringVar(&tcpAddr, "tcp", "127.0.0.1:8080", "the TCP listener")
	flag.StringVar(&udpAddr, "udp", "127.0.0.1:8053", "the UDP listener")
	admin := flag.String("admin", "127.0.0.1:9180", "the edge's admin API (metrics)")
	flag.StringVar(&dashboard, "dashboard", "127.0.0.1:9190", "where anyedge dev serves its dashboard")
	flag.Parse()
	if err := run(*bin, *config, *duration, *every, *tcpRate, *udpFlows, *admin); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// tcpAddr and udpAddr are the listeners the load goes to; dashboard is
// anyedge dev's dashboard address.
var tcpAddr, udpAddr, dashboard string

// counts are the load's outcomes since the last sample.
type counts struct{ tcpOK, tcpFail, udpSent, udpAnswered atomic.Int64 }

func run(bin, config string, duration, every time.Duration, tcpRate, udpFlows int, admin string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := []string{"dev", "--log-level", "warn", "--dashboard", dashboard}
	if config != "" {
		args = append(args, "--config", config)
	}
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if logs.Len() > 0 {
			fmt.Printf("\nanyedge dev logged above info:\n```\n%s```\n", logs.String())
		}
	}()
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "Ctrl-C") {
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	pid := cmd.Process.Pid

	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var c counts
	var wg sync.WaitGroup
	wg.Go(func() { tcpLoad(ctx, tcpRate, &c) })
	for i := range udpFlows {
		wg.Go(func() { udpLoad(ctx, i, &c) })
	}
	defer wg.Wait()

	fmt.Printf("soak: anyedge dev (pid %d), %d TCP connections/s, %d UDP flows at 10 queries/s, sample every %s for %s\n\n",
		pid, tcpRate, udpFlows, every, duration)
	fmt.Println("| elapsed | RSS MiB | goroutines | fds | threads | TCP ok | TCP failed | UDP sent | UDP answered | machine load (1 min) |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	start := time.Now()
	sample := func() {
		rss, threads := procStatus(pid)
		fmt.Printf("| %s | %.1f | %s | %d | %d | %d | %d | %d | %d | %s |\n", time.Since(start).Round(time.Second),
			float64(rss)/1024, goroutines(admin), fds(pid), threads,
			c.tcpOK.Swap(0), c.tcpFail.Swap(0), c.udpSent.Swap(0), c.udpAnswered.Swap(0), loadavg())
	}
	sample()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				sample()
				return nil
			}
			return ctx.Err()
		case <-tick.C:
			sample()
		}
	}
}

// tcpLoad opens rate connections per second to the quickstart's HTTP
// listener, each one request and a full answer.
func tcpLoad(ctx context.Context, rate int, c *counts) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Go(func() {
			if err := oneRequest(); err != nil {
				c.tcpFail.Add(1)
			} else {
				c.tcpOK.Add(1)
			}
		})
	}
}

func oneRequest() error {
	conn, err := net.DialTimeout("tcp", tcpAddr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: soak\r\n\r\n"); err != nil {
		return err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte("through anyedge")) {
		return errors.New("unexpected answer")
	}
	return nil
}

// udpLoad is one UDP flow: a DNS TXT query every 100 ms from one socket.
func udpLoad(ctx context.Context, i int, c *counts) {
	conn, err := net.Dial("udp", udpAddr)
	if err != nil {
		return
	}
	defer conn.Close()
	dc := &dns.Conn{Conn: conn}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for id := uint16(i) << 12; ; id++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		m := new(dns.Msg)
		m.SetQuestion("hello.anyedge.", dns.TypeTXT)
		m.Id = id
		c.udpSent.Add(1)
		_ = conn.SetDeadline(time.Now().Add(90 * time.Millisecond))
		if err := dc.WriteMsg(m); err != nil {
			continue
		}
		// Skip answers to earlier queries that came after their deadline:
		// one late answer must not shift every later one.
		for {
			r, err := dc.ReadMsg()
			if err != nil {
				break
			}
			if r.Id == id {
				c.udpAnswered.Add(1)
				break
			}
		}
	}
}

// loadavg is the machine's one-minute load average: the soak shares the
// machine, and a busy machine explains slow minutes.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// procStatus returns the resident set in KiB and the thread count.
func procStatus(pid int) (rssKiB, threads int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rssKiB, _ = strconv.Atoi(f[1])
		case "Threads:":
			threads, _ = strconv.Atoi(f[1])
		}
	}
	return rssKiB, threads
}

func fds(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return len(ents)
}

// goroutines reads go_goroutines from the edge's /metrics.
func goroutines(admin string) string {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + admin + "/metrics")
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			return v
		}
	}
	return "?"
}
