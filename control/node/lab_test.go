package node_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/node"
	"github.com/anyedge/anyedge/internal/testport"
)

// echo is a test endpoint: it answers the first line of every connection
// with its ID and closes. Health probes (connect, close) are harmless.
type echo struct {
	id string
	ln net.Listener
	wg sync.WaitGroup

	// mu guards served.
	mu     sync.Mutex
	served int
}

func startEcho(t *testing.T, id string, ln net.Listener) *echo {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	e := &echo{id: id, ln: ln}
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Go(func() { e.serve(c) })
		}
	})
	t.Cleanup(e.kill)
	return e
}

func (e *echo) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		return
	}
	if _, err := io.WriteString(c, e.id+"\n"); err == nil {
		e.mu.Lock()
		e.served++
		e.mu.Unlock()
	}
}

// addr is the endpoint's host:port.
func (e *echo) addr() string { return e.ln.Addr().String() }

// kill closes the listening socket, as a killed process would: new
// connections are refused from then on. Connections in progress finish.
func (e *echo) kill() {
	_ = e.ln.Close()
	e.wg.Wait()
}

func (e *echo) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.served
}

// fleet is the document of the failover lab: one PoP, region r1 preferred
// over region r2, each with its own endpoint group.
type fleet struct {
	edgePort       int
	r1, r2         string // backbone listen addresses
	adminPoP       int
	adminR1        int
	adminR2        int
	r1Eps, r2Eps   []string // "id=host:port"
	preserveClient bool
	pkiDir         string
	popExtra       string // more YAML keys of the pop, indented 6 spaces
}

func newFleet(t *testing.T) *fleet {
	return &fleet{
		edgePort: testport.Port(t),
		r1:       fmt.Sprintf("127.0.0.1:%d", testport.Port(t)),
		r2:       fmt.Sprintf("127.0.0.1:%d", testport.Port(t)),
		adminPoP: testport.Port(t), adminR1: testport.Port(t), adminR2: testport.Port(t),
		pkiDir: t.TempDir(),
	}
}

// healthCheck is the short health-check setting of every lab group.
const healthCheck = `{protocol: tcp, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2}`

func (f *fleet) yaml() string {
	var b strings.Builder
	eps := func(list []string) {
		for _, e := range list {
			id, addr, _ := strings.Cut(e, "=")
			fmt.Fprintf(&b, "              - {id: %s, address: %q, client_ip_preservation: %v}\n", id, addr, f.preserveClient)
		}
	}
	fmt.Fprintf(&b, `accelerators:
  - name: failover
    ip_addresses: [127.0.0.1]
    listeners:
      - protocol: tcp
        port_ranges: [{from: %d, to: %d}]
        endpoint_groups:
`, f.edgePort, f.edgePort)
	groups := []struct {
		region string
		pref   int
		eps    []string
	}{{"r1", 1, f.r1Eps}, {"r2", 2, f.r2Eps}}
	for _, g := range groups {
		if len(g.eps) == 0 {
			continue
		}
		fmt.Fprintf(&b, "          - region: %s\n            preference: %d\n            health_check: %s\n            endpoints:\n",
			g.region, g.pref, healthCheck)
		eps(g.eps)
	}
	fmt.Fprintf(&b, `topology:
  pki_dir: %s
  pops:
    - name: pop
      admin: 127.0.0.1:%d
%s  regions:
    - name: r1
      admin: 127.0.0.1:%d
      backbone: {listen: "%s"}
    - name: r2
      admin: 127.0.0.1:%d
      backbone: {listen: "%s"}
`, f.pkiDir, f.adminPoP, f.popExtra, f.adminR1, f.r1, f.adminR2, f.r2)
	return b.String()
}

func (f *fleet) doc(t *testing.T) *config.Document {
	t.Helper()
	doc, err := config.Load([]byte(f.yaml()), config.LoadOptions{})
	if err != nil {
		t.Fatalf("lab document: %v\n%s", err, f.yaml())
	}
	return doc
}

func (f *fleet) edgeAddr() string { return fmt.Sprintf("127.0.0.1:%d", f.edgePort) }

// testLogger writes warnings and errors to the test log when -v is given
// with ANYEDGE_TEST_LOG=1; otherwise it discards.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("ANYEDGE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// stopTimeout bounds how long nodes may take to stop; a node that outlives
// it fails the test (and is left running rather than waited for). Nodes
// stop in milliseconds (logged); the bound is for a hang, with room for a
// loaded machine under the race detector.
const stopTimeout = 30 * time.Second

// runNodes runs the named nodes of doc in this process and returns once
// each is ready. stores supplies certificates; a missing store means the
// node reads doc's pki_dir. The nodes stop at cleanup.
func runNodes(t *testing.T, doc *config.Document, names []string, stores map[string]*pki.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	ready := make(chan string, len(names))
	for _, name := range names {
		g.Go(func() error {
			err := node.Run(gctx, node.Options{
				Doc: doc, Node: name, Logger: testLogger(t).With("test_node", name), Store: stores[name],
				Ready: func() { ready <- name },
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	t.Cleanup(func() {
		cancel()
		began := time.Now()
		stopped := make(chan error, 1)
		go func() { stopped <- g.Wait() }()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("nodes: %v", err)
			}
			t.Logf("nodes stopped %s after their context's end", time.Since(began).Round(time.Millisecond))
		case <-time.After(stopTimeout):
			// What they wait on, for whoever meets this next.
			buf := make([]byte, 1<<20)
			t.Logf("goroutines:\n%s", buf[:runtime.Stack(buf, true)])
			t.Errorf("nodes did not stop within %s of their context's end", stopTimeout)
		}
	})
	deadline := time.After(15 * time.Second)
	for range names {
		select {
		case <-ready:
		case <-gctx.Done():
			t.Fatalf("a node stopped before it was ready: %v", g.Wait())
		case <-deadline:
			t.Fatal("nodes not ready within 15 s")
		}
	}
}

// ephemeralStores makes an in-memory PKI for the named nodes.
func ephemeralStores(t *testing.T, names ...string) map[string]*pki.Store {
	t.Helper()
	p, err := pki.NewEphemeral(names...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*pki.Store{}
	for _, n := range names {
		s, err := p.Store(n, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = s
	}
	return out
}

// request makes one request through the edge: connect, send a line, read
// the endpoint's one-line answer.
func request(addr string, timeout time.Duration) (string, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// waitServing polls the edge until a request succeeds.
func waitServing(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
	for time.Now().Before(deadline) {
		if _, err = request(addr, time.Second); err == nil {
			return
		}
		<-tick.C
	}
	t.Fatalf("edge does not serve: %v", err)
}

// try is one new client connection of the load.
type try struct {
	start, end time.Time
	done, ok   bool
	endpoint   string
	err        string
}

// load opens a new connection through the edge every interval, each in
// its own goroutine, and records the outcome of each.
type load struct {
	addr string
	stop chan struct{}
	wg   sync.WaitGroup

	// mu guards tries.
	mu    sync.Mutex
	tries []*try
}

func startLoad(addr string, every time.Duration) *load {
	l := &load{addr: addr, stop: make(chan struct{})}
	l.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			tr := &try{start: time.Now()}
			l.mu.Lock()
			l.tries = append(l.tries, tr)
			l.mu.Unlock()
			l.wg.Go(func() {
				id, err := request(l.addr, 5*time.Second)
				l.mu.Lock()
				defer l.mu.Unlock()
				tr.end, tr.done, tr.ok, tr.endpoint = time.Now(), true, err == nil, id
				if err != nil {
					tr.err = err.Error()
				}
			})
		}
	})
	return l
}

// snapshot copies the tries.
func (l *load) snapshot() []try {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]try, len(l.tries))
	for i, tr := range l.tries {
		out[i] = *tr
	}
	return out
}

// halt stops opening connections and waits for those in progress.
func (l *load) halt() []try {
	close(l.stop)
	l.wg.Wait()
	return l.snapshot()
}

// waitFor polls the tries until cond holds or the deadline passes.
func (l *load) waitFor(deadline time.Duration, cond func([]try) bool) bool {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	end := time.After(deadline)
	for {
		if cond(l.snapshot()) {
			return true
		}
		select {
		case <-tick.C:
		case <-end:
			return false
		}
	}
}

// recovered reports whether, among the tries started after since, the last
// n to finish in start order all succeeded and nothing started before them
// is still pending.
func recovered(tries []try, since time.Time, n int) bool {
	var after []try
	for _, tr := range tries {
		if tr.start.After(since) {
			after = append(after, tr)
		}
	}
	// Tries are in start order. Find the longest successful tail of
	// finished tries; anything pending before that tail means "not yet".
	run := 0
	for i := len(after) - 1; i >= 0; i-- {
		tr := after[i]
		if !tr.done {
			if run > 0 {
				return false
			}
			continue // still in progress at the very end: ignore
		}
		if !tr.ok {
			break
		}
		run++
	}
	return run >= n
}

// slow is the latency above which a successful connection counts as
// slowed by the fault (hedged or retried after a wait); unhurt ones take a
// few milliseconds on loopback.
const slow = 100 * time.Millisecond

// outcome sums up a scenario.
type outcome struct {
	// Tries counts the connections made; Failed those started after the
	// fault that failed; Cut those in progress at the fault that failed
	// (flows already routed to what died; no retry can save them).
	Tries, Failed, Cut int
	// LongestGap is the longest time without a new connection completing
	// successfully (between consecutive successful completions).
	LongestGap time.Duration
	// Slowed counts successful connections slower than slow; LastSlowed is
	// when the last of them started, after the fault: until then new flows
	// still tried the dead target first (detection time seen by the data
	// path).
	Slowed     int
	LastSlowed time.Duration
	// SlowestOK is the longest successful try.
	SlowestOK time.Duration
	Errors    []string
}

func summarize(tries []try, fault time.Time) outcome {
	var o outcome
	var ends []time.Time
	for _, tr := range tries {
		if !tr.done {
			continue
		}
		o.Tries++
		took := tr.end.Sub(tr.start)
		if tr.ok {
			ends = append(ends, tr.end)
			o.SlowestOK = max(o.SlowestOK, took)
			if took > slow && tr.end.After(fault) {
				o.Slowed++
				o.LastSlowed = max(o.LastSlowed, tr.start.Sub(fault))
			}
			continue
		}
		if tr.start.Before(fault) {
			o.Cut++
		} else {
			o.Failed++
		}
		if len(o.Errors) < 5 && !slices.Contains(o.Errors, tr.err) {
			o.Errors = append(o.Errors, tr.err)
		}
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	for i := 1; i < len(ends); i++ {
		o.LongestGap = max(o.LongestGap, ends[i].Sub(ends[i-1]))
	}
	return o
}

// syncBuffer is a bytes.Buffer safe for a subprocess writer and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
