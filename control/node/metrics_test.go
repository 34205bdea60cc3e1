package node_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/node"
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
	adminPoP, adminR1 string
}

func startLiveFleet(t *testing.T) *liveFleet {
	t.Helper()
	web := startEcho(t, "web", nil)
	health := startEcho(t, "health", nil)
	dns := startUDPEcho(t)
	tcpPort, udpPort := freePort(t, "tcp"), freePort(t, "udp")
	adminPoP, adminR1 := freePort(t, "tcp"), freePort(t, "tcp")
	_, hp, _ := net.SplitHostPort(health.addr())
	healthPort, _ := strconv.Atoi(hp)
	doc := mixedDoc(t, tcpPort, udpPort, web.addr(), dns, healthPort, adminPoP, adminR1,
		fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp")))
	runNodes(t, doc, []string{"r1", "pop"}, ephemeralStores(t, "r1", "pop"))
	f := &liveFleet{
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
			sum(pop, "anyedge_backbone_connections", `state="up"`) == 2
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
	require.Equal(t, 2.0, sum(pop, "anyedge_backbone_connections", `region="r1"`, `state="up"`))
	require.Positive(t, sum(pop, "anyedge_backbone_dials_total", `region="r1"`))

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
	require.Len(t, tcp.Refused, 10)
	require.Equal(t, int64(1), u.ActiveFlows)
	require.NotNil(t, u.UDP)
	require.Positive(t, u.UDP.DatagramsIn)
	require.Contains(t, u.UDP.Dropped, "edge_queue")
	require.Len(t, st.Regions[0].Pool, 2)
	require.Equal(t, "up", st.Regions[0].Pool[0].State)

	out, err := adminCall(f.adminR1, "status")
	require.NoError(t, err)
	require.Contains(t, out, `"active_udp_flows": 1`)
	require.Contains(t, out, `"active_flows": 1`, "the region's total counts the UDP flow")
}
