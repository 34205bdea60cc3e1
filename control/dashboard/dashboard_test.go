package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/dashboard"
	"github.com/anyedge/anyedge/internal/testport"
)

// state is the decoded /api/state.
type state struct {
	Nodes struct {
		Title string `json:"title"`
		Nodes []struct {
			Name   string             `json:"name"`
			OK     bool               `json:"ok"`
			Error  string             `json:"error"`
			Status json.RawMessage    `json:"status"`
			Rates  map[string]float64 `json:"rates"`
		} `json:"nodes"`
	} `json:"nodes"`
	History struct {
		Times  []int64               `json:"t"`
		Series map[string][]*float64 `json:"series"`
	} `json:"history"`
}

// get decodes the dashboard's /api/state through its handler.
func get(t *testing.T, d *dashboard.Dashboard) state {
	t.Helper()
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/state", nil))
	var st state
	require.NoError(t, json.Unmarshal([]byte(rec.Body.String()), &st), rec.Body.String())
	return st
}

// TestUnreachableNodes: a node that answers is shown with its rates and
// history; one that fails and one that hangs are shown as unreachable with
// their errors, and do not hold up the others.
func TestUnreachableNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var accepted atomic.Int64
		good := dashboard.SourceFunc(func(context.Context) ([]byte, error) {
			n := accepted.Add(10) // 10 new flows a poll, one poll a second
			return fmt.Appendf(nil, `{"role":"edge","flows":{"new_flows":%d},"regions":[{"name":"r1","reachable":true,"rtt_ms":12.5}],`+
				`"dns":{"queries_udp":%d,"queries_tcp":%d}}`, n, 2*n, n/10), nil
		})
		failing := dashboard.SourceFunc(func(context.Context) ([]byte, error) {
			return nil, errors.New("connection refused")
		})
		hanging := dashboard.SourceFunc(func(ctx context.Context) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		garbage := dashboard.SourceFunc(func(context.Context) ([]byte, error) { return []byte("<html>"), nil })
		d := dashboard.New([]dashboard.Target{
			{Name: "pop-1", Role: "edge", Source: good},
			{Name: "pop-2", Role: "edge", Source: failing},
			{Name: "r1", Role: "region", Source: hanging},
			{Name: "r2", Role: "region", Source: garbage},
		}, dashboard.Options{Title: "test"})
		before := get(t, d)
		require.Equal(t, "not polled yet", before.Nodes.Nodes[0].Error)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()

		time.Sleep(5*time.Second + time.Millisecond) // virtual time: five polls and samples
		synctest.Wait()
		st := get(t, d)
		require.Equal(t, "test", st.Nodes.Title)
		nodes := st.Nodes.Nodes
		require.True(t, nodes[0].OK)
		require.Contains(t, string(nodes[0].Status), `"new_flows":`)
		require.InDelta(t, 10, nodes[0].Rates["flows"], 0.01, "10 flows a second")
		require.InDelta(t, 21, nodes[0].Rates["dns/queries"], 0.01, "20 DNS queries a second over UDP, 1 over TCP")
		require.False(t, nodes[1].OK)
		require.Equal(t, "connection refused", nodes[1].Error)
		require.False(t, nodes[2].OK)
		require.Contains(t, nodes[2].Error, "deadline exceeded")
		require.Equal(t, "null", string(nodes[2].Status))
		require.False(t, nodes[3].OK)
		require.Equal(t, "status is not JSON", nodes[3].Error)

		h := st.History
		require.Len(t, h.Times, 5)
		rtt := h.Series["pop-1/rtt/r1"]
		require.Len(t, rtt, 5)
		require.Equal(t, 12.5, *rtt[4])
		flows := h.Series["pop-1/flows"]
		require.InDelta(t, 10, *flows[4], 0.01)
		require.InDelta(t, 21, *h.Series["pop-1/dns/queries"][4], 0.01)
		require.Len(t, h.Series, 3, "nothing from unreachable nodes")
		cancel()
		require.NoError(t, <-done)
	})
}

// TestHistoryWindow: the history keeps History/Interval samples, the
// newest last, with null where a node did not answer.
func TestHistoryWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var up atomic.Bool
		up.Store(true)
		src := dashboard.SourceFunc(func(context.Context) ([]byte, error) {
			if !up.Load() {
				return nil, errors.New("down")
			}
			return []byte(`{"regions":[{"name":"r1","reachable":true,"rtt_ms":1}]}`), nil
		})
		d := dashboard.New([]dashboard.Target{{Name: "p", Role: "edge", Source: src}},
			dashboard.Options{Interval: time.Second, History: 4 * time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		time.Sleep(6*time.Second + time.Millisecond)
		synctest.Wait()
		up.Store(false)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		h := get(t, d).History
		require.Len(t, h.Times, 4, "the window")
		require.Equal(t, time.Now().Add(-time.Millisecond).Truncate(time.Second).UnixMilli(), h.Times[3])
		s := h.Series["p/rtt/r1"]
		require.NotNil(t, s[0])
		require.NotNil(t, s[1])
		require.Nil(t, s[3], "no value while the node is down")
		cancel()
		require.NoError(t, <-done)
	})
}

// TestEvents reads the live stream over HTTP: a history and a nodes event
// at once, then a nodes event for every poll.
func TestEvents(t *testing.T) {
	var n atomic.Int64
	src := dashboard.SourceFunc(func(context.Context) ([]byte, error) {
		return fmt.Appendf(nil, `{"poll":%d}`, n.Add(1)), nil
	})
	d := dashboard.New([]dashboard.Target{{Name: "x", Role: "edge", Source: src}},
		dashboard.Options{Interval: 50 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- d.Serve(t.Context(), ln) }()
	t.Cleanup(func() { require.NoError(t, <-served) })

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/api/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	require.Equal(t, "default-src 'self'; img-src 'self' data:", resp.Header.Get("Content-Security-Policy"))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var events []string
	polls := map[string]bool{}
	for len(polls) < 3 && sc.Scan() {
		line := sc.Text()
		if ev, ok := strings.CutPrefix(line, "event: "); ok {
			events = append(events, ev)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(data, `"poll":`) {
			_, after, _ := strings.Cut(data, `"poll":`)
			polls[strings.SplitN(after, "}", 2)[0]] = true
		}
	}
	require.NoError(t, sc.Err())
	require.Equal(t, []string{"history", "nodes"}, events[:2], "the current state at once")
	require.Len(t, polls, 3, "new polls arrive as they happen")
}

// TestPage: the page and its code are served from the binary and name
// nothing outside it.
func TestPage(t *testing.T) {
	d := dashboard.New(nil, dashboard.Options{})
	for path, want := range map[string]string{"/": `<script src="app.js">`, "/app.js": "new EventSource('api/events')", "/style.css": "grid-template-areas"} {
		rec := httptest.NewRecorder()
		d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Contains(t, rec.Body.String(), want, path)
		require.NotContains(t, rec.Body.String(), "http://", "%s fetches nothing from elsewhere", path)
		require.NotContains(t, rec.Body.String(), "https://", "%s fetches nothing from elsewhere", path)
	}
}

// TestFleetTargetsRemote: with operator credentials the dashboard reads a
// node at its remote_admin address over mutual TLS; without, at its
// loopback admin address.
func TestFleetTargetsRemote(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	require.NoError(t, pki.InitCA(dir, time.Hour, now))
	require.NoError(t, pki.Issue(dir, "pop-1", time.Hour, now))
	require.NoError(t, pki.IssueOperator(dir, "viewer", pki.RoleRead, time.Hour, now))
	op, err := pki.LoadOperator(pki.OperatorCertFile(dir, "viewer"), pki.OperatorKeyFile(dir, "viewer"), filepath.Join(dir, pki.CACertFile))
	require.NoError(t, err)
	store, err := pki.OpenStore(dir, "pop-1", nil)
	require.NoError(t, err)

	local, remote := testport.Port(t), testport.Port(t)
	doc, err := config.Load(fmt.Appendf(nil, `accelerators:
  - name: a
    ip_addresses: [127.0.0.1]
    listeners: [{protocol: tcp, port_ranges: [{from: 1}], endpoint_groups: [{region: r1}]}]
topology:
  pops: [{name: pop-1, admin: "127.0.0.1:%d", remote_admin: "127.0.0.1:%d"}]
  regions: [{name: r1, backbone: {listen: "127.0.0.1:1"}}]
`, local, remote), config.LoadOptions{})
	require.NoError(t, err)
	srv, err := admin.Listen(admin.Options{Addr: fmt.Sprintf("127.0.0.1:%d", local), Remote: fmt.Sprintf("127.0.0.1:%d", remote),
		Store: store, Node: fixedNode(`{"node":"pop-1"}`)})
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(t.Context()) }()
	t.Cleanup(func() { require.NoError(t, <-served) })

	for _, tc := range []struct {
		name string
		op   *pki.OperatorClient
		addr int
	}{{"remote with operator certificate", op, remote}, {"loopback without", nil, local}} {
		t.Run(tc.name, func(t *testing.T) {
			targets := dashboard.FleetTargets(doc, tc.op)
			require.Len(t, targets, 2)
			require.Equal(t, fmt.Sprintf("127.0.0.1:%d", tc.addr), targets[0].Addr)
			require.Equal(t, "edge", targets[0].Role)
			require.Equal(t, "region", targets[1].Role)
			body, err := targets[0].Source.Status(t.Context())
			require.NoError(t, err)
			require.JSONEq(t, `{"node":"pop-1"}`, string(body))
			for _, tg := range targets {
				tg.Source.(interface{ Close() }).Close()
			}
		})
	}
}

// fixedNode is an admin.Node whose status is a fixed JSON document.
type fixedNode json.RawMessage

func (n fixedNode) Status() any { return json.RawMessage(n) }
func (n fixedNode) Ready() bool { return true }
