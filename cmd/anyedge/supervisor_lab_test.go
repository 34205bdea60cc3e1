//go:build linux

package main

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/cmd/anyedge/internal/netlab"
)

// supervisor stands in for systemd in the labs, where there is none: it
// listens on the process's NOTIFY_SOCKET and, once armed, like a unit with
// WatchdogSec= and WatchdogSignal=SIGKILL (configs/anyedge-edge@.service),
// kills the process by PID when no WATCHDOG=1 has come for the watchdog
// interval. It is armed only by the subtest that measures it: on a CI
// machine loaded far beyond its cores the other subtests' edges may miss a
// ping, which systemd would rightly punish but which is not what they test.
type supervisor struct {
	conn     *net.UnixConn
	sock     string
	interval time.Duration
	armed    atomic.Bool

	// mu guards ready, pings and killedAt.
	mu       sync.Mutex
	ready    bool
	pings    int
	killedAt time.Time
}

// unitWatchdog reads WatchdogSec from the edge's unit template, so that
// the lab proves the interval operators get.
func unitWatchdog(t *testing.T) time.Duration {
	t.Helper()
	f, err := os.Open("../../configs/anyedge-edge@.service")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "WatchdogSec="); ok {
			d, err := time.ParseDuration(v)
			require.NoError(t, err)
			return d
		}
	}
	t.Fatal("the edge unit sets no WatchdogSec")
	return 0
}

// newSupervisor binds a notify socket in dir for the process called name.
func newSupervisor(t *testing.T, dir, name string, interval time.Duration) *supervisor {
	t.Helper()
	sock := filepath.Join(dir, name+".notify")
	_ = os.Remove(sock) // a previous run of the same node
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	return &supervisor{conn: c, sock: sock, interval: interval}
}

// env is what systemd puts in the environment of a Type=notify unit with
// a watchdog.
func (s *supervisor) env() []string {
	return []string{"NOTIFY_SOCKET=" + s.sock, "WATCHDOG_USEC=" + strconv.FormatInt(s.interval.Microseconds(), 10)}
}

// watch supervises p until it exits; it runs in the caller's goroutine.
func (s *supervisor) watch(p *netlab.Proc) {
	defer s.conn.Close()
	buf := make([]byte, 512)
	var last time.Time
	for {
		select {
		case <-p.Done():
			return
		default:
		}
		_ = s.conn.SetReadDeadline(time.Now().Add(s.interval / 20))
		n, err := s.conn.Read(buf)
		now := time.Now()
		if err == nil {
			for _, st := range strings.Split(string(buf[:n]), "\n") {
				s.mu.Lock()
				switch st {
				case "READY=1":
					s.ready = true
				case "WATCHDOG=1":
					s.pings++
					last = now
				}
				s.mu.Unlock()
			}
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		// systemd arms the watchdog when the service is started (READY=1).
		s.mu.Lock()
		armed := s.armed.Load() && s.ready && !last.IsZero()
		s.mu.Unlock()
		if armed && now.Sub(last) > s.interval {
			p.Kill(syscall.SIGKILL)
			s.mu.Lock()
			s.killedAt = now
			s.mu.Unlock()
			<-p.Done()
			return
		}
	}
}

// state returns whether READY=1 came, how many pings came and when the
// supervisor killed the process (zero if it did not).
func (s *supervisor) state() (ready bool, pings int, killedAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready, s.pings, s.killedAt
}
