package bench

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/node"
	"github.com/anyedge/anyedge/internal/testport"
)

// reloadDoc is the document of BenchmarkReloadUnderLoad: a TCP listener
// whose two echo endpoints have weights w1 and w2, and, when extra is
// non-zero, a second listener on that port (bound and closed as the
// documents alternate).
const reloadDoc = `
accelerators:
  - name: bench
    ip_addresses: [127.0.0.1]
    listeners:
      - protocol: tcp
        port_ranges: [{from: %[1]d}]
        endpoint_groups:
          - region: region-bench
            health_check: {protocol: tcp, interval: 5s, timeout: 2s}
            endpoints:
              - {id: echo-1, address: "%[2]s", weight: %[4]d}
              - {id: echo-2, address: "%[3]s", weight: %[5]d}
%[6]stopology:
  pki_dir: %[7]s
  pops:
    - name: pop-bench
      admin: 127.0.0.1:%[8]d
  regions:
    - name: region-bench
      admin: 127.0.0.1:%[9]d
      backbone: {listen: "127.0.0.1:%[10]d"}
`

const extraListener = `      - protocol: tcp
        port_ranges: [{from: %d}]
        endpoint_groups:
          - region: region-bench
            endpoints: [{id: extra, address: "%s"}]
`

// reloadFleet is an edge and a region running in this process, each with
// an update channel, and the two documents a reload alternates between.
type reloadFleet struct {
	echo    string // the edge's listener
	docs    [2]config.Loaded
	updates map[string]chan config.Update
}

func startReloadFleet(b testing.TB) *reloadFleet {
	b.Helper()
	echo1 := serve(b, func(c net.Conn) { _, _ = io.Copy(c, c) })
	echo2 := serve(b, func(c net.Conn) { _, _ = io.Copy(c, c) })
	dir := filepath.Join(b.TempDir(), "pki")
	now := time.Now()
	require.NoError(b, pki.InitCA(dir, time.Hour, now))
	require.NoError(b, pki.Issue(dir, "pop-bench", time.Hour, now))
	require.NoError(b, pki.Issue(dir, "region-bench", time.Hour, now))
	port, extra := testport.Port(b), testport.Port(b)
	admins := []int{testport.Port(b), testport.Port(b), testport.Port(b)}
	f := &reloadFleet{echo: fmt.Sprintf("127.0.0.1:%d", port), updates: map[string]chan config.Update{}}
	for i, w := range [][2]int{{128, 128}, {200, 50}} {
		more := ""
		if i == 1 {
			more = fmt.Sprintf(extraListener, extra, echo1)
		}
		text := fmt.Sprintf(reloadDoc, port, echo1, echo2, w[0], w[1], more, dir, admins[0], admins[1], admins[2])
		l, err := config.Parse([]byte(text), config.LoadOptions{Env: []string{}})
		require.NoError(b, err, text)
		f.docs[i] = l
	}
	for _, name := range []string{"region-bench", "pop-bench"} {
		f.updates[name] = make(chan config.Update)
	}
	runNodes(b, func(name string) node.Options {
		return node.Options{Doc: f.docs[0].Doc, Revision: f.docs[0].Revision, Updates: f.updates[name]}
	})
	return f
}

// reloading sends the two documents in turn to both nodes, one every
// every, until stop; it returns how many it sent once stopped.
func (f *reloadFleet) reloading(every time.Duration) (stop func() int) {
	done := make(chan struct{})
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 1; ; i++ {
			select {
			case <-done:
				return
			case <-t.C:
			}
			for _, name := range []string{"region-bench", "pop-bench"} {
				select {
				case f.updates[name] <- config.Update{Loaded: f.docs[i%2], Trigger: "bench"}:
				case <-done:
					return
				}
			}
			n.Add(1)
		}
	})
	return func() int {
		close(done)
		wg.Wait()
		return int(n.Load())
	}
}

// BenchmarkReloadUnderLoad opens new flows (connect, echo one byte,
// close) from parallel clients through an edge and a region, with no
// reload, and while both nodes reload every 50 ms, alternating between
// two documents that change the endpoints' weights and add and remove a
// second listener. It reports connections per second and failed
// connections; a reload must change neither. bench/reload.sh runs it.
func BenchmarkReloadUnderLoad(b *testing.B) {
	for _, every := range []time.Duration{0, 50 * time.Millisecond} {
		name := "no-reload"
		if every > 0 {
			name = "reload-every-" + every.String()
		}
		b.Run(name, func(b *testing.B) {
			f := startReloadFleet(b)
			var failed atomic.Int64
			var firstErr atomic.Pointer[error]
			stop := func() int { return 0 }
			if every > 0 {
				stop = f.reloading(every)
			}
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := connectEcho(f.echo); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, &err)
					}
				}
			})
			b.StopTimer()
			elapsed := time.Since(start)
			reloads := stop()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "conns/s")
			b.ReportMetric(float64(failed.Load()), "failed")
			b.ReportMetric(float64(reloads), "reloads")
			if p := firstErr.Load(); p != nil {
				b.Logf("first failure: %v", *p)
			}
		})
	}
}

// connectEcho is one new flow: connect, echo one byte, close.
func connectEcho(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return echoOnce(c)
}

// TestReloadFleet checks that the reload benchmark's fleet reloads and
// carries flows meanwhile.
func TestReloadFleet(t *testing.T) {
	f := startReloadFleet(t)
	stop := f.reloading(time.Millisecond)
	for range 50 {
		require.NoError(t, connectEcho(f.echo))
	}
	require.Positive(t, stop())
}
