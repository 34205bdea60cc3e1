// Package testetcd runs a real etcd server for tests: Debian's etcd
// (package etcd-server) on free loopback ports with a temporary data
// directory, killed by its PID when the test ends. A test on a machine
// without etcd skips (internal/needs: fails under ANYEDGE_REQUIRE).
package testetcd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/anyedge/anyedge/internal/needs"
	"github.com/anyedge/anyedge/internal/testcert"
	"github.com/anyedge/anyedge/internal/testport"
)

// Server is one etcd member. Kill and Start stop and start it again on
// the same ports and data, as an operator's restart would.
type Server struct {
	t                    testing.TB
	bin, dir             string
	clientPort, peerPort int
	// healthPort serves /health in plain HTTP whatever the clients speak:
	// "true" once the member has a leader and takes requests.
	healthPort int
	// mu guards cmd and done; outMu guards out.
	tls   []string // the member's TLS flags (none: plain)
	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	outMu sync.Mutex
	out   bytes.Buffer
}

// Start starts an etcd member and waits until it serves requests.
func Start(t testing.TB) *Server { return StartTLS(t, nil) }

// StartTLS starts an etcd member whose clients speak TLS with a server
// certificate of ca and must present a client certificate of ca. A nil
// ca is Start.
func StartTLS(t testing.TB, ca *testcert.CA) *Server {
	t.Helper()
	needs.Tools(t, "etcd-server", "etcd")
	bin, _ := exec.LookPath("etcd")
	s := &Server{t: t, bin: bin, dir: t.TempDir(), clientPort: testport.Port(t), peerPort: testport.Port(t),
		healthPort: testport.Port(t)}
	if ca != nil {
		srv := ca.Issue(t, "etcd-server", testcert.Leaf{Names: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
		s.tls = []string{"--cert-file", srv.CertFile, "--key-file", srv.KeyFile, "--trusted-ca-file", ca.File, "--client-cert-auth"}
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("etcd output:\n%s", s.output())
		}
	})
	s.Restart()
	return s
}

// Endpoint is the member's client address, host:port.
func (s *Server) Endpoint() string { return fmt.Sprintf("127.0.0.1:%d", s.clientPort) }

// Restart starts the member again (after Kill), on the same ports and
// data, and waits until it serves requests: its /health says true, which
// needs a leader. Taking connections is not enough: a member just
// restarted accepts them before its election, and a loaded machine can
// spend seconds there.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatal("testetcd: already running")
	}
	peer := fmt.Sprintf("http://127.0.0.1:%d", s.peerPort)
	client := "http://" + s.Endpoint()
	if s.tls != nil {
		client = "https://" + s.Endpoint()
	}
	cmd := exec.Command(s.bin, append([]string{"--name", "test", "--data-dir", s.dir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test=" + peer, "--log-level", "warn", "--logger", "zap",
		"--listen-metrics-urls", fmt.Sprintf("http://127.0.0.1:%d", s.healthPort)}, s.tls...)...)
	cmd.Stdout, cmd.Stderr = outWriter{s}, outWriter{s}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testetcd: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(s.done)
	health := fmt.Sprintf("http://127.0.0.1:%d/health", s.healthPort)
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := healthy(hc, health)
		if err == nil {
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("testetcd: etcd exited at start:\n%s", s.output())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("testetcd: etcd on %s not healthy within 60 s: %v\n%s", s.Endpoint(), err, s.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// healthy asks etcd's /health whether the member serves requests.
func healthy(hc *http.Client, url string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return err
	}
	if h.Health != "true" {
		return fmt.Errorf("health %q (%s)", h.Health, resp.Status)
	}
	return nil
}

// Kill kills the member (SIGKILL, by its PID) and waits for it to exit.
// It does nothing when the member is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// output is what etcd printed.
func (s *Server) output() string {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	return s.out.String()
}

// outWriter appends etcd's output to the server's buffer.
type outWriter struct{ s *Server }

func (w outWriter) Write(p []byte) (int, error) {
	w.s.outMu.Lock()
	defer w.s.outMu.Unlock()
	return w.s.out.Write(p)
}
