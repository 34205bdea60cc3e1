package udp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"

	"github.com/anyedge/anyedge/internal/needs"
)

// startDNS serves A and TXT answers for every name on 127.0.0.1.
func startDNS(t testing.TB) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	txt := strings.Repeat("anyedge ", 20)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			hdr := dns.RR_Header{Name: qq.Name, Class: dns.ClassINET, Rrtype: qq.Qtype, Ttl: 60}
			switch qq.Qtype {
			case dns.TypeA:
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(203, 0, 113, 7)})
			case dns.TypeTXT:
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{txt, "second string"}})
			}
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.ActivateAndServe() })
	<-started
	t.Cleanup(func() { _ = srv.Shutdown(); wg.Wait() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestDig asks the real dig, through a UDP listener, a small DNS server.
func TestDig(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		needs.Skip(t, "dig not installed (.ci/run installs dnsutils)")
	}
	f := newFleet(t, "pop-1")
	dnsAddr := startDNS(t)
	port := freeUDPPort(t)
	r := f.startRegion(t, "127.0.0.1:0", []gateway.Endpoint{gatewayEndpoint("dns-1", dnsAddr, port, false)})
	e := f.startEdge(t, "pop-1", r.addr(), edgeOpts{port: port, endpoints: []string{"dns-1"}})
	dig := func(typ string) string {
		out, err := exec.Command("dig", "+short", "+tries=1", "+time=3", "@127.0.0.1", "-p", strconv.Itoa(int(port)),
			"www.example.test", typ).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return strings.TrimSpace(string(out))
	}
	require.Equal(t, "203.0.113.7", dig("A"))
	require.Equal(t, `"`+strings.Repeat("anyedge ", 20)+`" "second string"`, dig("TXT"))
	require.Equal(t, int64(2), e.fwd.Stats().Opened, "each dig is a flow of its own")
}

// tcpRelay forwards TCP connections from a listener on 127.0.0.1:port to
// to: iperf3's control connection, which anyedge's TCP path would carry in
// production, kept out of this package's test.
func tcpRelay(t testing.TB, port uint16, to string) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				d, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer d.Close()
				var cw sync.WaitGroup
				cw.Go(func() { _, _ = io.Copy(d, c); _ = d.(*net.TCPConn).CloseWrite() })
				_, _ = io.Copy(c, d)
				_ = c.(*net.TCPConn).CloseWrite()
				cw.Wait()
			})
		}
	})
}

// iperfServer runs `iperf3 -s` on 127.0.0.1 and returns its port; the
// process is killed by PID at cleanup.
func iperfServer(t testing.TB) uint16 {
	t.Helper()
	port := freeUDPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(int(port)))
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	waitFor(t, 5*time.Second, func() bool {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}, "iperf3 server did not start")
	return port
}

// iperfResult is the part of iperf3 -J output the tests read.
type iperfResult struct {
	End struct {
		Sum struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			LostPercent   float64 `json:"lost_percent"`
			Packets       int64   `json:"packets"`
			LostPackets   int64   `json:"lost_packets"`
		} `json:"sum"`
	} `json:"end"`
	Error string `json:"error"`
}

// runIperf runs an iperf3 UDP client against 127.0.0.1:port.
func runIperf(port uint16, rate string, length int, secs int, extra ...string) (iperfResult, error) {
	args := append([]string{"-c", "127.0.0.1", "-p", strconv.Itoa(int(port)), "-u", "-b", rate,
		"-l", strconv.Itoa(length), "-t", strconv.Itoa(secs), "-J"}, extra...)
	out, err := exec.Command("iperf3", args...).Output()
	var res iperfResult
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		return res, fmt.Errorf("iperf3: %v: %s", err, out)
	}
	if res.Error != "" {
		return res, errors.New("iperf3: " + res.Error)
	}
	return res, err
}

// TestIperf3 pushes 100 Mbit/s of UDP through the path for 2 s with the
// real iperf3, once, and checks what the path did rather than how fast:
// iperf3 completes (its TCP control connection through a relay, its UDP
// stream — setup handshake included — through anyedge), the endpoint gets
// the stream, and every packet the edge read is accounted for: sent as a
// datagram, sent on the flow's stream, or counted as dropped. The loss
// rate is logged; its bound lives in the benchmark (bench/udp.sh,
// TestUDPBenchmark, each run against a fresh iperf3 server), because on a
// 2-core machine shared with other test binaries CPU starvation alone
// loses a few percent of packets in the kernel's socket buffers.
//
// One run, no rerun: a rerun against the same iperf3 server was what made
// this test fail under load. The first run's packets still queued in the
// path reached the server's freshly bound UDP socket for the second run,
// which took the first stale packet for its client's setup message and
// answered it, so the second client waited 30 s and failed with "unable
// to read from stream socket".
func TestIperf3(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		needs.Skip(t, "iperf3 not installed (.ci/run installs it)")
	}
	f := newFleet(t, "pop-1")
	iport := iperfServer(t)
	port := freeUDPPort(t)
	tcpRelay(t, port, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(iport))))
	ep := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), iport)
	r := f.startRegion(t, "127.0.0.1:0", []gateway.Endpoint{gatewayEndpoint("iperf-1", ep, port, false)})
	e := f.startEdge(t, "pop-1", r.addr(), edgeOpts{port: port, endpoints: []string{"iperf-1"}})
	// -w 4M keeps iperf3's own socket buffers from being the limit, as in
	// bench/udp.sh.
	res, err := runIperf(port, "100M", 1200, 2, "-w", "4M")
	require.NoError(t, err)
	st := e.fwd.Stats()
	t.Logf("iperf3 -u 100M through anyedge: %.1f Mbit/s, %d/%d lost (%.2f%%); edge %+v; region %+v",
		res.End.Sum.BitsPerSecond/1e6, res.End.Sum.LostPackets, res.End.Sum.Packets, res.End.Sum.LostPercent,
		st, r.gw.UDPStats())
	sum := res.End.Sum
	require.Positive(t, sum.Packets)
	require.Less(t, sum.LostPackets, sum.Packets, "nothing reached the endpoint")
	// Every client packet the edge read left it one way or was counted
	// (once the edge has worked through what its socket still held).
	waitFor(t, 10*time.Second, func() bool {
		st = e.fwd.Stats()
		return st.FromClient == st.Datagrams+st.FallbackUp+st.Dropped
	}, "a client packet the edge read is neither forwarded nor counted as dropped")
}
