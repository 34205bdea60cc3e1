package node_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anyedge/anyedge/control/node/internal/netlab"

	"github.com/anyedge/anyedge/internal/needs"
)

// TestFailover measures what a client sees when an endpoint or a region
// dies: one client opens a new connection through the edge every 10 ms
// (a one-line request and answer), the fault strikes, and the test runs
// until 100 connections in a row have succeeded again. Region r1 is
// preferred over r2; both groups use the short health-check settings of
// healthCheck (tcp, interval 1s, timeout 500ms, thresholds 2).
//
// The figures go to the log (go test -run TestFailover -v ./control/node/)
// and, by hand, to BENCHMARKS.md "Failover".
func TestFailover(t *testing.T) {
	t.Logf("| scenario | connections | failed new | cut in flight | longest gap | slowed (>%s) | last slowed after fault | slowest OK |", slow)
	t.Run("endpoint-refused", func(t *testing.T) {
		// r1 has two endpoints; one stops listening (a killed process: new
		// connections are refused). Retries must hide it entirely.
		e1a := startEcho(t, "e1a", nil)
		e1b := startEcho(t, "e1b", nil)
		e2 := startEcho(t, "e2", nil)
		f := newFleet(t)
		f.r1Eps = []string{"e1a=" + e1a.addr(), "e1b=" + e1b.addr()}
		f.r2Eps = []string{"e2=" + e2.addr()}
		runNodes(t, f.doc(t), []string{"r1", "r2", "pop"}, ephemeralStores(t, "r1", "r2", "pop"))
		o := measure(t, "a: endpoint killed (refused)", f.edgeAddr(), func() {
			servedBefore(t, e1a)
			e1a.kill()
		})
		if o.Failed != 0 {
			t.Errorf("%d client connections failed, want 0: %v", o.Failed, o.Errors)
		}
	})

	t.Run("endpoint-blackholed", func(t *testing.T) {
		// e1a lives in its own network namespace behind a veth; the fault
		// sets its end of the link down: SYNs vanish, no reset, no ICMP.
		if err := netlab.Available(); err != nil {
			needs.Skip(t, err)
		}
		link, err := netlab.New()
		if err != nil {
			needs.Skip(t, "cannot build a network namespace here: ", err)
		}
		t.Cleanup(func() {
			if err := link.Close(); err != nil {
				t.Error(err)
			}
		})
		ln, err := link.Listen(link.PeerAddr.String() + ":0")
		if err != nil {
			t.Fatal(err)
		}
		e1a := startEcho(t, "e1a", ln)
		e1b := startEcho(t, "e1b", nil)
		e2 := startEcho(t, "e2", nil)
		f := newFleet(t)
		f.r1Eps = []string{"e1a=" + e1a.addr(), "e1b=" + e1b.addr()}
		f.r2Eps = []string{"e2=" + e2.addr()}
		runNodes(t, f.doc(t), []string{"r1", "r2", "pop"}, ephemeralStores(t, "r1", "r2", "pop"))
		// Flows open across the fault, some of them (almost surely) on e1a:
		// they are lost, but once the client gives up they must not hold
		// up anything, shutdown included (the region used to wait on the
		// silent endpoint for its idle timeout, 340 s).
		for range 8 {
			c, err := net.Dial("tcp", f.edgeAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
		o := measure(t, "b: endpoint black-holed", f.edgeAddr(), func() {
			servedBefore(t, e1a)
			if err := link.SetPeerDown(); err != nil {
				t.Fatal(err)
			}
		})
		checkBound(t, o)
	})

	t.Run("region-killed", func(t *testing.T) {
		// r1 runs as its own process (the real binary, certificates from
		// `anyedge certs`) and is killed with SIGKILL: its backbone goes
		// silent, nothing says goodbye.
		if testing.Short() {
			t.Skip("builds cmd/anyedge")
		}
		bin := buildAnyedge(t)
		e1 := startEcho(t, "e1", nil)
		e2 := startEcho(t, "e2", nil)
		f := newFleet(t)
		f.r1Eps = []string{"e1=" + e1.addr()}
		f.r2Eps = []string{"e2=" + e2.addr()}
		for _, args := range [][]string{
			{"certs", "init", "--dir", f.pkiDir},
			{"certs", "issue", "--dir", f.pkiDir, "--node", "pop"},
			{"certs", "issue", "--dir", f.pkiDir, "--node", "r1"},
			{"certs", "issue", "--dir", f.pkiDir, "--node", "r2"},
		} {
			if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
				t.Fatalf("anyedge %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		cfg := filepath.Join(t.TempDir(), "fleet.yaml")
		if err := os.WriteFile(cfg, []byte(f.yaml()), 0o644); err != nil {
			t.Fatal(err)
		}
		region := exec.Command(bin, "region", "--config", cfg, "--node", "r1", "--log-level", "warn")
		var stderr syncBuffer
		region.Stderr = &stderr
		if err := region.Start(); err != nil {
			t.Fatal(err)
		}
		killed := false
		t.Cleanup(func() {
			if !killed {
				_ = region.Process.Kill()
				_ = region.Wait()
			}
			if t.Failed() {
				t.Logf("region r1 stderr:\n%s", stderr.String())
			}
		})
		// The edge is ready once every region, r1 included, is reachable.
		runNodes(t, f.doc(t), []string{"r2", "pop"}, nil)
		o := measure(t, "c: region gateway SIGKILLed", f.edgeAddr(), func() {
			if e1.count() == 0 {
				t.Error("r1 served nothing before the fault: the scenario does not bite")
			}
			_ = region.Process.Kill() // SIGKILL, by PID
			_ = region.Wait()
			killed = true
		})
		checkBound(t, o)
	})
}

// maxFailures bounds the failed connections of the black-hole and
// region-kill scenarios: 3 s of the 10 ms load. The target is under 1 s
// (100); the bound only catches a failover that does not work at all.
const maxFailures = 300

func checkBound(t *testing.T, o outcome) {
	t.Helper()
	if o.Failed > maxFailures {
		t.Errorf("%d client connections failed, want at most %d: %v", o.Failed, maxFailures, o.Errors)
	}
}

// measure runs the load through the edge at addr, strikes with fault after
// a clean baseline of 50 connections, and runs for at least window after
// the fault and until 100 connections in a row have succeeded (at most
// 20 s).
// servedBefore waits, while the load runs, until ep has served a flow:
// the fault must strike an endpoint that takes traffic, and on a loaded
// machine its first health checks may pass after the baseline's.
func servedBefore(t *testing.T, ep interface{ count() int }) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for ep.count() == 0 {
		if time.Now().After(deadline) {
			t.Error("the endpoint served nothing before the fault: the scenario does not bite")
			return
		}
		<-time.After(10 * time.Millisecond)
	}
}

func measure(t *testing.T, name, addr string, fault func()) outcome {
	t.Helper()
	waitServing(t, addr)
	l := startLoad(addr, 10*time.Millisecond)
	halted := false
	t.Cleanup(func() {
		if !halted {
			l.halt()
		}
	})
	if !l.waitFor(10*time.Second, func(tries []try) bool { return recovered(tries, time.Time{}, 50) }) {
		halted = true
		o := summarize(l.halt(), time.Now())
		t.Fatalf("no clean baseline before the fault: %+v", o)
	}
	faultAt := time.Now()
	fault()
	ok := l.waitFor(20*time.Second, func(tries []try) bool {
		return time.Since(faultAt) >= window && recovered(tries, faultAt, 100)
	})
	halted = true
	tries := l.halt()
	var before []try
	for _, tr := range tries {
		if tr.start.Before(faultAt) && tr.end.Before(faultAt) {
			before = append(before, tr)
		}
	}
	if b := summarize(before, faultAt); b.Cut > 0 {
		t.Errorf("%d failures before the fault: %v", b.Cut, b.Errors)
	}
	o := summarize(tries, faultAt)
	if !ok {
		t.Errorf("not recovered within 20 s of the fault: %+v", o)
	}
	t.Logf("| %s | %d | %d | %d | %s | %d | %s | %s |", name, o.Tries, o.Failed, o.Cut,
		ms(o.LongestGap), o.Slowed, ms(o.LastSlowed), ms(o.SlowestOK))
	if len(o.Errors) > 0 {
		t.Logf("client errors (first kinds): %v", o.Errors)
	}
	return o
}

// window is the least time measured after a fault: long enough for the
// health checks (interval 1 s, threshold 2) to have acted.
const window = 5 * time.Second

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// buildAnyedge builds cmd/anyedge into a temporary directory.
func buildAnyedge(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		needs.Skip(t, "no go command to build cmd/anyedge: ", err)
	}
	bin := filepath.Join(t.TempDir(), "anyedge")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/anyedge/anyedge/cmd/anyedge").CombinedOutput()
	if err != nil {
		t.Fatalf("build cmd/anyedge: %v\n%s", err, out)
	}
	return bin
}
