//go:build linux

package edge_test

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/router"
)

// cpuTime is the CPU time (user+system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestAcceptBacksOffWhenOutOfDescriptors: with the process out of
// descriptors (EMFILE) and clients waiting in the listen queue, the accept
// loop backs off instead of spinning — it uses a small part of one CPU
// while the condition lasts — and serves the queue once descriptors are
// back. The clients are another process (bash's /dev/tcp), since this
// one has no descriptor to spare.
func TestAcceptBacksOffWhenOutOfDescriptors(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	m := flow.NewMeter(flow.Listener{Key: "emfile", Protocol: "tcp"}, nil)
	port := freePort(t)
	e, err := edge.New(edge.Config{Listeners: []edge.Listener{{
		Protocol: "tcp", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Ports: []edge.PortRange{{From: port, To: port}}, Meter: m, Route: router.Listener{Key: "emfile"},
	}}}, edge.Regions{})
	require.NoError(t, err)
	require.NoError(t, e.Listen())
	var wg sync.WaitGroup
	wg.Go(func() { _ = e.Run(context.Background()) })
	t.Cleanup(func() { _ = e.Close(); wg.Wait() })

	const clients = 20
	cmd := exec.Command("bash", "-c", fmt.Sprintf(
		`read; for i in $(seq %d); do exec {fd}<>/dev/tcp/127.0.0.1/%d || exit 1; done; echo opened; read`, clients, port))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)

	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old))
	// A new descriptor takes the lowest free number, which must be below
	// the limit: a limit at the lowest free number leaves none to spare.
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	open := map[int]bool{}
	for _, f := range fds {
		var n int
		if _, err := fmt.Sscan(f.Name(), &n); err == nil {
			open[n] = true
		}
	}
	lowest := 0
	for open[lowest] {
		lowest++
	}
	low := old
	low.Cur = uint64(lowest)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	// Fill the holes below the limit (the listing's own descriptor, any
	// closed meanwhile) until the process is out of descriptors.
	var fill []*os.File
	t.Cleanup(func() {
		for _, f := range fill {
			_ = f.Close()
		}
	})
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			require.ErrorIs(t, err, syscall.EMFILE)
			break
		}
		fill = append(fill, f)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old))
		}
	}
	t.Cleanup(restore)

	_, err = stdin.Write([]byte("\n"))
	require.NoError(t, err)
	require.True(t, lines.Scan() && lines.Text() == "opened", "the clients did not connect")
	// Measure the process's CPU while every accept fails: a spinning loop
	// burns a whole CPU, a backing-off one almost nothing.
	cpu0, wall0 := cpuTime(), time.Now()
	<-time.After(time.Second) // the measurement window
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	require.Zero(t, m.Snapshot().Flows+int64(m.Snapshot().Ended(flow.NoHealthyEndpoint)), "a connection was accepted without a descriptor")
	t.Logf("out of descriptors: %v of CPU in %v", cpu.Round(time.Millisecond), wall.Round(time.Millisecond))
	require.Less(t, cpu, wall/4, "the accept loop spins while the process is out of descriptors")

	restore()
	deadline := time.Now().Add(10 * time.Second)
	for m.Snapshot().Ended(flow.NoHealthyEndpoint) < clients {
		require.True(t, time.Now().Before(deadline), "the queued clients were not served after the descriptors came back: %d", m.Snapshot().Ended(flow.NoHealthyEndpoint))
		time.Sleep(5 * time.Millisecond)
	}
}
