package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/node"
	"github.com/anyedge/anyedge/internal/testport"
)

// idEcho is an endpoint that answers every line of every connection with
// its ID, for as long as the connection lasts.
func idEcho(t *testing.T, id string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := io.WriteString(c, id+"\n"); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// reloadFleet is the document of the reload lab: one PoP, region r1 with
// endpoints e1 and e2, a TCP listener, and what each step changes.
type reloadFleet struct {
	port, port2         int // the listener's port; port2 > 0 adds a second TCP listener
	udpPort             int // > 0 adds a UDP listener
	adminPoP, adminR1   int
	r1                  string
	e1, e2              string // endpoint addresses; e2 == "" leaves it out
	w1, w2              int
	dial                int
	udpEndpoint         string
	name                string // the PoP's name (default "pop")
	popAdminOverride    int    // > 0 sets another admin port (a fixed setting)
	healthCheckInterval string
}

func (f *reloadFleet) yaml() string {
	name := f.name
	if name == "" {
		name = "pop"
	}
	interval := f.healthCheckInterval
	if interval == "" {
		interval = "1s"
	}
	var b strings.Builder
	group := func(proto string) {
		fmt.Fprintf(&b, "        endpoint_groups:\n          - region: r1\n            traffic_dial: %d\n", f.dial)
		fmt.Fprintf(&b, "            health_check: {protocol: tcp, interval: %s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2}\n", interval)
		b.WriteString("            endpoints:\n")
		switch proto {
		case "udp":
			fmt.Fprintf(&b, "              - {id: u1, address: %q}\n", f.udpEndpoint)
			return
		case "tcp2":
			fmt.Fprintf(&b, "              - {id: s1, address: %q}\n", f.e1)
			return
		}
		fmt.Fprintf(&b, "              - {id: e1, address: %q, weight: %d}\n", f.e1, f.w1)
		if f.e2 != "" {
			fmt.Fprintf(&b, "              - {id: e2, address: %q, weight: %d}\n", f.e2, f.w2)
		}
	}
	b.WriteString("accelerators:\n  - name: web\n    ip_addresses: [127.0.0.1]\n    listeners:\n")
	fmt.Fprintf(&b, "      - protocol: tcp\n        port_ranges: [{from: %d}]\n", f.port)
	group("tcp")
	if f.port2 > 0 {
		fmt.Fprintf(&b, "      - protocol: tcp\n        port_ranges: [{from: %d}]\n", f.port2)
		group("tcp2")
	}
	if f.udpPort > 0 {
		fmt.Fprintf(&b, "      - protocol: udp\n        port_ranges: [{from: %d}]\n", f.udpPort)
		group("udp")
	}
	admin := f.adminPoP
	if f.popAdminOverride > 0 {
		admin = f.popAdminOverride
	}
	fmt.Fprintf(&b, `topology:
  pops:
    - name: %s
      admin: 127.0.0.1:%d
  regions:
    - name: r1
      admin: 127.0.0.1:%d
      backbone: {listen: %q}
`, name, admin, f.adminR1, f.r1)
	return b.String()
}

// loaded parses the fleet's document as a source would.
func (f *reloadFleet) loaded(t *testing.T) config.Loaded {
	t.Helper()
	l, err := config.Parse([]byte(f.yaml()), config.LoadOptions{Env: []string{}})
	require.NoError(t, err, f.yaml())
	return l
}

// reloadNodes runs pop and r1 of the fleet with an update channel each
// and returns them.
func reloadNodes(t *testing.T, f *reloadFleet) map[string]chan config.Update {
	t.Helper()
	return updatableNodes(t, f.loaded(t), "r1", "pop")
}

// updatableNodes runs the named nodes of l, in order, with an update
// channel each, and returns the channels once all are ready.
func updatableNodes(t *testing.T, l config.Loaded, names ...string) map[string]chan config.Update {
	t.Helper()
	stores := ephemeralStores(t, names...)
	updates := map[string]chan config.Update{}
	for _, name := range names {
		updates[name] = make(chan config.Update)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ready := make(chan string, len(names))
	errs := make(chan error, len(names))
	for _, name := range names {
		wg.Go(func() {
			err := node.Run(ctx, node.Options{Doc: l.Doc, Revision: l.Revision, Source: "test", Updates: updates[name],
				Node: name, Store: stores[name], Logger: testLogger(t).With("test_node", name),
				Ready: func() { ready <- name }})
			if err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		select {
		case err := <-errs:
			t.Error(err)
		default:
		}
	})
	for range names {
		select {
		case <-ready:
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(15 * time.Second):
			t.Fatal("nodes not ready within 15 s")
		}
	}
	return updates
}

// send hands u to the node's update channel.
func send(t *testing.T, ch chan config.Update, u config.Update) {
	t.Helper()
	select {
	case ch <- u:
	case <-time.After(10 * time.Second):
		t.Fatal("the node does not take updates")
	}
}

// reloadAll sends the fleet's document to both nodes and waits until
// both run it. The edge goes first, so that the flows of a listener
// removed with its endpoints end as listener_removed (were the region
// first, they would end as endpoint_removed: the first removal to reach a
// flow names its end).
func reloadAll(t *testing.T, f *reloadFleet, updates map[string]chan config.Update) config.Revision {
	t.Helper()
	l := f.loaded(t)
	send(t, updates["pop"], config.Update{Loaded: l, Trigger: "test"})
	waitStatus(t, fmt.Sprintf("127.0.0.1:%d", f.adminPoP), "pop runs "+string(l.Revision), func(st node.EdgeStatus) bool {
		return st.Config.Revision == string(l.Revision)
	})
	send(t, updates["r1"], config.Update{Loaded: l, Trigger: "test"})
	waitStatus(t, fmt.Sprintf("127.0.0.1:%d", f.adminPoP), "pop runs "+string(l.Revision), func(st node.EdgeStatus) bool {
		return st.Config.Revision == string(l.Revision)
	})
	waitRegion(t, fmt.Sprintf("127.0.0.1:%d", f.adminR1), "r1 runs "+string(l.Revision), func(st node.RegionStatus) bool {
		return st.Config.Revision == string(l.Revision)
	})
	return l.Revision
}

// waitRegion polls a region's /status until cond holds.
func waitRegion(t *testing.T, adminAddr, what string, cond func(node.RegionStatus) bool) node.RegionStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st node.RegionStatus
		out, err := adminCall(adminAddr, "status")
		if err == nil {
			err = json.Unmarshal([]byte(out), &st)
		}
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15 s (%v); last status:\n%s", what, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flowConn is a long-lived flow through the edge.
type flowConn struct {
	c  net.Conn
	r  *bufio.Reader
	id string // the endpoint that serves it
}

func openFlow(t *testing.T, addr string) *flowConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	fc := &flowConn{c: c, r: bufio.NewReader(c)}
	fc.id, err = fc.ask()
	require.NoError(t, err)
	return fc
}

// ask sends a line and reads the endpoint's answer.
func (fc *flowConn) ask() (string, error) {
	_ = fc.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(fc.c, "hi\n"); err != nil {
		return "", err
	}
	s, err := fc.r.ReadString('\n')
	return strings.TrimSpace(s), err
}

// flowsTo opens flows through addr until at least n go to each of ids.
func flowsTo(t *testing.T, addr string, n int, ids ...string) map[string][]*flowConn {
	t.Helper()
	out := map[string][]*flowConn{}
	for tries := 0; ; tries++ {
		enough := true
		for _, id := range ids {
			enough = enough && len(out[id]) >= n
		}
		if enough {
			return out
		}
		require.Less(t, tries, 200, "200 flows did not reach every endpoint %v: %v", ids, out)
		fc := openFlow(t, addr)
		out[fc.id] = append(out[fc.id], fc)
	}
}

// TestReloadLive runs an edge and a region and reloads them, step by step,
// the way an operator would: weights and a traffic dial (no flow cut),
// an endpoint removed (only its flows cut, endpoint_removed), an invalid
// document and one that renames the node (nothing changes), a listener
// added and removed, and a fixed setting (admin address) reported as
// needing a restart.
func TestReloadLive(t *testing.T) {
	f := &reloadFleet{port: testport.Port(t), adminPoP: testport.Port(t), adminR1: testport.Port(t),
		r1: fmt.Sprintf("127.0.0.1:%d", testport.Port(t)), e1: idEcho(t, "e1"), e2: idEcho(t, "e2"),
		w1: 128, w2: 128, dial: 100}
	updates := reloadNodes(t, f)
	edgeAddr := fmt.Sprintf("127.0.0.1:%d", f.port)
	popAdmin := fmt.Sprintf("127.0.0.1:%d", f.adminPoP)
	waitServing(t, edgeAddr)
	st := waitStatus(t, popAdmin, "revision shown", func(st node.EdgeStatus) bool { return st.Config.Revision != "" })
	require.Equal(t, string(f.loaded(t).Revision), st.Config.Revision)
	require.Equal(t, "test", st.Config.Source)

	flows := flowsTo(t, edgeAddr, 2, "e1", "e2")
	alive := func(what string, fcs ...*flowConn) {
		t.Helper()
		for _, fc := range fcs {
			id, err := fc.ask()
			require.NoError(t, err, "%s: a flow to %s died", what, fc.id)
			require.Equal(t, fc.id, id)
		}
	}

	// Weights and the traffic dial: every flow goes on.
	f.w1, f.w2, f.dial = 200, 0, 90
	rev := reloadAll(t, f, updates)
	alive("weights", append(flows["e1"], flows["e2"]...)...)
	for range 10 {
		require.Equal(t, "e1", openFlow(t, edgeAddr).id, "e2 has weight 0")
	}
	st, _ = edgeStatus(popAdmin)
	require.Zero(t, st.Flows.Closed["endpoint_removed"]+st.Flows.Closed["listener_removed"])
	rs := waitRegion(t, fmt.Sprintf("127.0.0.1:%d", f.adminR1), "weights shown", func(st node.RegionStatus) bool {
		return len(st.Endpoints) == 2 && st.Endpoints[1].Weight == 0
	})
	require.Equal(t, 200, rs.Endpoints[0].Weight)
	m := scrape(t, popAdmin)
	require.Equal(t, 1.0, m[`anyedge_config_info{revision="`+string(rev)+`"}`])
	require.Equal(t, 1.0, m[`anyedge_config_reloads_total{result="applied"}`])

	// e2 removed: its flows are cut, and only they.
	f.e2 = ""
	reloadAll(t, f, updates)
	alive("e2 removed", flows["e1"]...)
	for _, fc := range flows["e2"] {
		_, err := fc.ask()
		require.Error(t, err, "a flow to the removed endpoint still works")
	}
	st = waitStatus(t, popAdmin, "endpoint_removed counted", func(st node.EdgeStatus) bool {
		return st.Flows.Closed["endpoint_removed"] == uint64(len(flows["e2"]))
	})
	require.Zero(t, st.Flows.Closed["listener_removed"])
	waitRegion(t, fmt.Sprintf("127.0.0.1:%d", f.adminR1), "e2 gone from r1", func(st node.RegionStatus) bool {
		return len(st.Endpoints) == 1 && st.Endpoints[0].ID == "e1"
	})

	// An invalid document: nothing changes, the error is shown and
	// counted.
	_, perr := config.Parse([]byte("accelerators: [{name: web, Listeners: []}]\n"), config.LoadOptions{Env: []string{}})
	require.Error(t, perr)
	send(t, updates["pop"], config.Update{Err: perr, Trigger: "test"})
	st = waitStatus(t, popAdmin, "invalid reload shown", func(st node.EdgeStatus) bool {
		return st.Config.Reloads[node.ReloadInvalid] == 1
	})
	require.Equal(t, node.ReloadInvalid, st.Config.LastError.Result)
	require.Contains(t, st.Config.LastError.Error, `unknown key "Listeners"`)
	require.Equal(t, st.Config.LastReload, st.Config.LastError)
	require.Equal(t, string(f.loaded(t).Revision), st.Config.Revision, "the running revision changed")
	alive("invalid reload", flows["e1"]...)
	require.Equal(t, 1.0, scrape(t, popAdmin)[`anyedge_config_reloads_total{result="invalid"}`])

	// A document that renames the node: refused.
	f.name = "pop-renamed"
	send(t, updates["pop"], config.Update{Loaded: f.loaded(t), Trigger: "test"})
	f.name = ""
	st = waitStatus(t, popAdmin, "refused reload shown", func(st node.EdgeStatus) bool {
		return st.Config.Reloads[node.ReloadRefused] == 1
	})
	require.Contains(t, st.Config.LastError.Error, `no node "pop"`)
	alive("refused reload", flows["e1"]...)

	// A second TCP listener and a UDP one, then neither.
	f.port2, f.udpPort, f.udpEndpoint = testport.Port(t), testport.Port(t), startUDPEcho(t)
	reloadAll(t, f, updates)
	addr2 := fmt.Sprintf("127.0.0.1:%d", f.port2)
	waitServing(t, addr2)
	second := openFlow(t, addr2)
	uc, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", f.udpPort))
	require.NoError(t, err)
	defer uc.Close()
	require.True(t, udpEchoes(uc, "ping"), "no UDP echo through the added listener")
	alive("listeners added", flows["e1"]...)
	f.port2, f.udpPort = 0, 0
	reloadAll(t, f, updates)
	_, err = second.ask()
	require.Error(t, err, "a flow of the removed listener still works")
	st = waitStatus(t, popAdmin, "listener_removed counted", func(st node.EdgeStatus) bool {
		return st.Flows.Closed["listener_removed"] >= 2 && len(st.Listeners) == 1
	})
	_, err = net.DialTimeout("tcp", addr2, time.Second)
	require.Error(t, err, "the removed listener still accepts")
	alive("listeners removed", flows["e1"]...)

	// A fixed setting: applied at the next restart, and said so.
	f.popAdminOverride = testport.Port(t)
	f.w1 = 100
	reloadAll(t, f, updates)
	st, _ = edgeStatus(popAdmin)
	require.Equal(t, []string{"topology.pops[pop].admin"}, st.Config.RestartRequired)
	require.Equal(t, 1.0, scrape(t, popAdmin)["anyedge_config_restart_required"])
	f.popAdminOverride = 0
	reloadAll(t, f, updates)
	st, _ = edgeStatus(popAdmin)
	require.Empty(t, st.Config.RestartRequired)
	require.Zero(t, st.Flows.Closed["endpoint_removed"]-uint64(len(flows["e2"])))
}

// udpEchoes sends p until the echo comes back (a few tries: a new flow's
// first packets may wait for its stream).
func udpEchoes(c net.Conn, p string) bool {
	buf := make([]byte, 64)
	for range 20 {
		if _, err := c.Write([]byte(p)); err != nil {
			return false
		}
		_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == p {
			return true
		}
	}
	return false
}

// resources are what a leak would show: goroutines, descriptors, heap.
type resources struct {
	goroutines int
	fds        int
	heap       uint64
}

func measureResources(t *testing.T) resources {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return resources{goroutines: runtime.NumGoroutine(), fds: len(fds), heap: ms.HeapInuse}
}

// TestReload100UnderLoad: 100 reloads, alternating between a document
// with one listener and one with two more (TCP and UDP) and other
// weights, while clients keep opening flows through the first listener
// and long flows stay open across all of them: no flow fails or is cut,
// every reload applies, and goroutines, descriptors and heap come back to
// their level before.
func TestReload100UnderLoad(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc/self/fd to count descriptors")
	}
	f := &reloadFleet{port: testport.Port(t), adminPoP: testport.Port(t), adminR1: testport.Port(t),
		r1: fmt.Sprintf("127.0.0.1:%d", testport.Port(t)), e1: idEcho(t, "e1"), e2: idEcho(t, "e2"),
		w1: 128, w2: 128, dial: 100, udpEndpoint: startUDPEcho(t)}
	updates := reloadNodes(t, f)
	edgeAddr := fmt.Sprintf("127.0.0.1:%d", f.port)
	popAdmin := fmt.Sprintf("127.0.0.1:%d", f.adminPoP)
	waitServing(t, edgeAddr)
	a := f.loaded(t)
	f.port2, f.udpPort, f.w1, f.w2 = testport.Port(t), testport.Port(t), 200, 50
	b := f.loaded(t)

	// Warm up: both documents once, a little traffic.
	for _, l := range []config.Loaded{b, a} {
		for _, n := range []string{"r1", "pop"} {
			send(t, updates[n], config.Update{Loaded: l, Trigger: "test"})
		}
	}
	waitStatus(t, popAdmin, "warm", func(st node.EdgeStatus) bool { return st.Config.Revision == string(a.Revision) })
	for range 20 {
		_, err := request(edgeAddr, 5*time.Second)
		require.NoError(t, err)
	}
	before := measureResources(t)

	long := flowsTo(t, edgeAddr, 1, "e1", "e2")
	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, fail int
		errs     []error
	)
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := request(edgeAddr, 5*time.Second)
				mu.Lock()
				if err != nil {
					fail++
					errs = append(errs, err)
				} else {
					ok++
				}
				mu.Unlock()
			}
		})
	}
	for i := range 100 {
		l := a
		if i%2 == 0 {
			l = b
		}
		for _, n := range []string{"r1", "pop"} {
			send(t, updates[n], config.Update{Loaded: l, Trigger: "test"})
		}
		// Let the clients make progress between two reloads, so that
		// flows open across every one of them.
		mu.Lock()
		want := ok + 3
		mu.Unlock()
		for deadline := time.Now().Add(10 * time.Second); ; {
			mu.Lock()
			n := ok + fail
			mu.Unlock()
			if n >= want {
				break
			}
			require.True(t, time.Now().Before(deadline), "the load stalled")
			time.Sleep(time.Millisecond)
		}
	}
	st := waitStatus(t, popAdmin, "100 reloads applied", func(st node.EdgeStatus) bool {
		return st.Config.Revision == string(a.Revision) && st.Config.Reloads[node.ReloadApplied] == 102
	})
	close(stop)
	wg.Wait()
	require.Zero(t, fail, "flows failed during the reloads: %v", errs)
	require.GreaterOrEqual(t, ok, 300, "too little load to tell")
	require.Zero(t, st.Config.Reloads[node.ReloadFailed])
	for id, fcs := range long {
		for _, fc := range fcs {
			got, err := fc.ask()
			require.NoError(t, err, "a long flow to %s was cut", id)
			require.Equal(t, id, got)
		}
	}
	st, _ = edgeStatus(popAdmin)
	require.Zero(t, st.Flows.Closed["endpoint_removed"])
	t.Logf("%d requests during 100 reloads, none failed", ok)

	// Resources back to where they were once the long flows end.
	for _, fcs := range long {
		for _, fc := range fcs {
			_ = fc.c.Close()
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		after := measureResources(t)
		if after.goroutines <= before.goroutines+5 && after.fds <= before.fds+5 &&
			after.heap <= before.heap+before.heap/2+4<<20 {
			t.Logf("before: %+v, after: %+v", before, after)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resources did not come back: before %+v, after %+v", before, after)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
