package node_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anyedge/anyedge/internal/needs"
	"github.com/anyedge/anyedge/internal/testport"
)

// TestClientIPPreservationHAProxy checks the PROXY protocol v2 header the
// region sends to an endpoint with client_ip_preservation against a real
// consumer: HAProxy with `accept-proxy` logs the client and accelerator
// addresses it read from the header, and they must be the client's own
// source address and the edge listener it reached.
func TestClientIPPreservationHAProxy(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			needs.Skip(t, "haproxy not installed")
		}
		bin = "/usr/sbin/haproxy"
	}
	port := testport.Port(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	conf := fmt.Sprintf(`global
    log stdout format raw local0 info
defaults
    mode http
    log global
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:%d accept-proxy
    log-format "anyedge-test ci=%%ci cp=%%cp fi=%%fi fp=%%fp st=%%ST"
    http-request return status 200 content-type text/plain string "ok"
`, port)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &lineLog{}
	hap := exec.Command(bin, "-db", "-f", cfg)
	hap.Stdout = logs
	var stderr syncBuffer
	hap.Stderr = &stderr
	if err := hap.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = hap.Process.Kill() // by PID
		_ = hap.Wait()
		if t.Failed() {
			t.Logf("haproxy stdout:\n%s\nstderr:\n%s", logs.String(), stderr.String())
		}
	})
	haddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitListening(t, haddr)

	f := newFleet(t)
	f.preserveClient = true
	f.r1Eps = []string{"hap=" + haddr}
	runNodes(t, f.doc(t), []string{"r1", "pop"}, ephemeralStores(t, "r1", "pop"))

	// The client speaks from 127.0.0.2, so that its address differs from
	// the region's own (127.0.0.1) that HAProxy would log without PROXY.
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c, err := d.Dial("tcp", f.edgeAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: anyedge.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("response: %v (got %q)", err, resp)
	}
	if !strings.HasPrefix(string(resp), "HTTP/1.0 200") && !strings.HasPrefix(string(resp), "HTTP/1.1 200") {
		t.Fatalf("response %q, want 200", resp)
	}
	client := c.LocalAddr().(*net.TCPAddr)

	re := regexp.MustCompile(`anyedge-test ci=(\S+) cp=(\d+) fi=(\S+) fp=(\d+) st=(\d+)`)
	var m []string
	deadline := time.Now().Add(5 * time.Second)
	for m == nil && time.Now().Before(deadline) {
		m = re.FindStringSubmatch(logs.String())
		if m == nil {
			logs.wait(100 * time.Millisecond)
		}
	}
	if m == nil {
		t.Fatal("haproxy logged no request")
	}
	t.Logf("haproxy: %s", m[0])
	if got, want := m[1]+":"+m[2], client.String(); got != want {
		t.Errorf("haproxy logged client %s, want %s (the client's source address)", got, want)
	}
	if got, want := m[3]+":"+m[4], f.edgeAddr(); got != want {
		t.Errorf("haproxy logged destination %s, want %s (the accelerator address)", got, want)
	}
	if m[5] != "200" {
		t.Errorf("haproxy logged status %s", m[5])
	}
}

// waitListening polls addr until it accepts a TCP connection.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen: %v", addr, err)
		}
		<-tick.C
	}
}

// lineLog collects a subprocess's output and signals each write.
type lineLog struct {
	mu     sync.Mutex
	b      strings.Builder
	notify chan struct{}
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if l.notify != nil {
		close(l.notify)
		l.notify = nil
	}
	return len(p), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// wait returns after the next write or after d.
func (l *lineLog) wait(d time.Duration) {
	l.mu.Lock()
	if l.notify == nil {
		l.notify = make(chan struct{})
	}
	ch := l.notify
	l.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(d):
	}
}
