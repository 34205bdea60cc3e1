package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/node"
	"github.com/anyedge/anyedge/internal/testport"
)

// scrape reads a node's /metrics and returns every sample: the metric
// name with its labels as printed ("name{a=\"b\"}") → value.
func scrape(t *testing.T, adminAddr string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return out
}

// names returns the metric names of samples.
func names(samples map[string]float64) map[string]bool {
	out := map[string]bool{}
	for s := range samples {
		if i := strings.IndexByte(s, '{'); i >= 0 {
			s = s[:i]
		}
		out[s] = true
	}
	return out
}

// sum adds the samples of name whose labels contain every one of labels
// (`key="value"`).
func sum(samples map[string]float64, name string, labels ...string) float64 {
	total := 0.0
	for s, v := range samples {
		if s != name && !strings.HasPrefix(s, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(s, l)
		}
		if ok {
			total += v
		}
	}
	return total
}

// liveFleet runs one region and one edge with a TCP and a UDP listener
// whose endpoints answer, and moves one TCP request and one UDP packet
// through them.
type liveFleet struct {
	tcpAddr, udpAddr  string
	dnsAddr           string
	adminPoP, adminR1 string
}

func startLiveFleet(t *testing.T, popExtra ...string) *liveFleet {
	t.Helper()
	web := startEcho(t, "web", nil)
	health := startEcho(t, "health", nil)
	dns := startUDPEcho(t)
	tcpPort, udpPort := testport.Port(t), testport.Port(t)
	adminPoP, adminR1 := testport.Port(t), testport.Port(t)
	_, hp, _ := net.SplitHostPort(health.addr())
	healthPort, _ := strconv.Atoi(hp)
	doc := mixedDoc(t, tcpPort, udpPort, web.addr(), dns, healthPort, adminPoP, adminR1,
		fmt.Sprintf("127.0.0.1:%d", testport.Port(t)), popExtra...)
	runNodes(t, doc, []string{"r1", "pop"}, ephemeralStores(t, "r1", "pop"))
	f := &liveFleet{
		dnsAddr: dns,
		tcpAddr: fmt.Sprintf("127.0.0.1:%d", tcpPort), udpAddr: fmt.Sprintf("127.0.0.1:%d", udpPort),
		adminPoP: fmt.Sprintf("127.0.0.1:%d", adminPoP), adminR1: fmt.Sprintf("127.0.0.1:%d", adminR1),
	}
	waitServing(t, f.tcpAddr)
	c, err := net.Dial("udp", f.udpAddr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	buf := make([]byte, 64)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Write([]byte("ping"))
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "ping" {
			break
		}
		require.True(t, time.Now().Before(deadline), "no UDP echo through the edge")
	}
	return f
}

// startUDPEcho serves a UDP echo on 127.0.0.1 until the test ends.
func startUDPEcho(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-done
	})
	return c.LocalAddr().String()
}

// TestMetricsLive: a live edge and region export TCP and UDP alike:
// per-listener flows and bytes, the backbone pool, the region's flows per
// endpoint (UDP included), dials and their latency, endpoint health, the
// Go runtime, the process and the build; /status shows the same.
func TestMetricsLive(t *testing.T) {
	f := startLiveFleet(t)
	tcpL, udpL := `protocol="tcp"`, `protocol="udp"`

	var pop, r1 map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pop, r1 = scrape(t, f.adminPoP), scrape(t, f.adminR1)
		settled := sum(pop, "anyedge_edge_flows_closed_total", tcpL) >= 1 &&
			sum(pop, "anyedge_backbone_connections", `state="up"`) == 4 &&
			sum(pop, "anyedge_edge_udp_datagrams_out_total", udpL) > 0 // counted after the reply's write
		if settled || time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	for _, n := range []string{"go_goroutines", "process_cpu_seconds_total", "anyedge_build_info"} {
		require.True(t, names(pop)[n], "edge exports %s", n)
		require.True(t, names(r1)[n], "region exports %s", n)
	}
	require.GreaterOrEqual(t, sum(pop, "anyedge_edge_flows_total", tcpL), 1.0)
	require.GreaterOrEqual(t, sum(pop, "anyedge_edge_flows_closed_total", tcpL), 1.0, "the TCP request ended")
	require.Positive(t, sum(pop, "anyedge_edge_bytes_in_total", tcpL))
	require.Positive(t, sum(pop, "anyedge_edge_bytes_out_total", tcpL))
	require.Positive(t, sum(pop, "anyedge_edge_packets_in_total", tcpL), "TCP segments are counted at the end")
	require.Equal(t, 1.0, sum(pop, "anyedge_edge_flows_total", udpL))
	require.Equal(t, 1.0, sum(pop, "anyedge_edge_active_flows", udpL))
	require.Positive(t, sum(pop, "anyedge_edge_udp_datagrams_in_total", udpL))
	require.Positive(t, sum(pop, "anyedge_edge_udp_datagrams_out_total", udpL))
	require.Equal(t, 1.0, sum(pop, "anyedge_edge_listener_ready", udpL))
	require.Equal(t, 1.0, sum(pop, "anyedge_edge_ready"))
	require.Equal(t, 4.0, sum(pop, "anyedge_backbone_connections", `region="r1"`, `state="up"`), "the default pool")
	require.Positive(t, sum(pop, "anyedge_backbone_dials_total", `region="r1"`))
	_, ok := pop[`anyedge_backbone_connections_retired_total{reason="rtt_rise",region="r1"}`]
	require.True(t, ok, "retirements are exported with every reason, zero included")
	require.Zero(t, sum(pop, "anyedge_backbone_connections_draining", `region="r1"`))

	require.Equal(t, 1.0, sum(r1, "anyedge_region_active_flows", `endpoint="dns"`, udpL), "UDP flows count at the region")
	require.GreaterOrEqual(t, sum(r1, "anyedge_region_dials_total", `endpoint="web"`, tcpL), 1.0)
	require.GreaterOrEqual(t, sum(r1, "anyedge_region_dial_duration_seconds_count", `endpoint="web"`), 1.0)
	require.Equal(t, 2.0, sum(r1, "anyedge_region_endpoint_healthy"))
	require.Positive(t, sum(r1, "anyedge_region_udp_packets_to_endpoint_total"))
	for s := range pop {
		require.NotContains(t, s, "127.0.0.1:", "no client address in a label: %s", s)
	}

	st := waitStatus(t, f.adminPoP, "counters", func(st node.EdgeStatus) bool { return len(st.Listeners) == 2 })
	tcp, u := st.Listeners[0], st.Listeners[1]
	require.GreaterOrEqual(t, tcp.NewFlows, int64(1))
	require.Positive(t, tcp.BytesIn)
	require.Nil(t, tcp.UDP)
	require.Len(t, tcp.Closed, 9)
	require.Len(t, tcp.Refused, 11)
	require.Equal(t, int64(1), u.ActiveFlows)
	require.NotNil(t, u.UDP)
	require.Positive(t, u.UDP.DatagramsIn)
	require.Contains(t, u.UDP.Dropped, "edge_queue")
	require.Len(t, st.Regions[0].Pool, 4)
	require.Equal(t, "up", st.Regions[0].Pool[0].State)
	require.Positive(t, st.Regions[0].Pool[0].MinRTTMillis, "each connection shows its minimum RTT, the baseline of retirement")
	require.Contains(t, st.Regions[0].Retired, "rtt_rise")

	out, err := adminCall(f.adminR1, "status")
	require.NoError(t, err)
	require.Contains(t, out, `"active_udp_flows": 1`)
	require.Contains(t, out, `"active_flows": 1`, "the region's total counts the UDP flow")
}

// TestFlowLogsLive: with flow logs on, the edge writes one line per
// finished flow, TCP and UDP, with the endpoint's address from the
// document; the UDP flow still open at shutdown ends with "shutdown".
func TestFlowLogsLive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.log")
	var f *liveFleet
	t.Cleanup(func() {
		// Runs after the nodes have stopped (cleanups run last first).
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		var tcp, udp []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &m), l)
			switch m["protocol"] {
			case "tcp":
				tcp = append(tcp, m)
			case "udp":
				udp = append(udp, m)
			}
		}
		require.NotEmpty(t, tcp)
		require.Len(t, udp, 1)
		u := udp[0]
		require.Equal(t, "shutdown", u["reason"])
		require.Equal(t, "dns", u["endpoint_id"])
		require.Equal(t, "r1", u["endpoint_region"])
		_, port, _ := net.SplitHostPort(f.dnsAddr)
		require.Equal(t, "127.0.0.1", u["endpoint_ip"])
		require.Equal(t, port, fmt.Sprint(u["endpoint_port"]))
		require.Positive(t, u["bytes_in"])
		require.Positive(t, u["packets_out"])
		for _, m := range tcp {
			require.Contains(t, []any{"client_fin", "endpoint_fin"}, m["reason"], m)
			require.Equal(t, "web", m["endpoint_id"])
		}
	})
	f = startLiveFleet(t, "      flow_logs: {enabled: true, path: "+strconv.Quote(path)+"}\n")
	st := waitStatus(t, f.adminPoP, "a TCP flow logged", func(st node.EdgeStatus) bool {
		return st.FlowLogs != nil && st.FlowLogs.Written >= 1
	})
	require.Zero(t, st.FlowLogs.QueueFull)
	require.Positive(t, sum(scrape(t, f.adminPoP), "anyedge_flowlog_records_written_total"))
}

// TestGrafanaDashboard: every metric that a query of
// configs/grafana-dashboard.json names exists on a live edge or region
// (with BGP and flow logs on, so that their metrics exist too).
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../../configs/grafana-dashboard.json")
	require.NoError(t, err)
	var dash any
	require.NoError(t, json.Unmarshal(b, &dash))
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	require.Greater(t, len(exprs), 30, "the dashboard has queries")

	f := startLiveFleet(t,
		"      flow_logs: {enabled: true, path: "+strconv.Quote(filepath.Join(t.TempDir(), "flows.log"))+"}\n",
		"      bgp: {local_asn: 64512, router_id: 198.18.0.1, neighbors: [{address: 127.0.0.1, peer_asn: 64513}]}\n")
	have := names(scrape(t, f.adminPoP))
	for n := range names(scrape(t, f.adminR1)) {
		have[n] = true
	}
	metric := regexp.MustCompile(`\b(?:anyedge|go|process)_[a-z0-9_]+`)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metric.FindAllString(e, -1) {
			used[n] = true
			require.True(t, have[n], "the dashboard's query %q names %s, which no node exports", e, n)
		}
	}
	require.Greater(t, len(used), 40)
}
