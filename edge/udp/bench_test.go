package udp_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
)

// kernelUDPDrops reads the kernel's UDP receive-buffer drops (all sockets)
// from /proc/net/snmp.
func kernelUDPDrops() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "Udp: ") {
			continue
		}
		fields := strings.Fields(line)[1:]
		if names == nil {
			names = fields
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(fields) {
				v, _ := strconv.ParseInt(fields[i], 10, 64)
				return v
			}
		}
	}
	return 0
}

// cpuTime is the CPU time (user+system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchIperf runs one iperf3 client against a fresh one-off iperf3 server
// (so that no run inherits a server left busy by the last), killed by PID
// afterwards.
func benchIperf(t *testing.T, iport, port uint16, rate string, length, secs int, extra ...string) (iperfResult, error) {
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, "iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", strconv.Itoa(int(iport)))
	require.NoError(t, srv.Start())
	defer func() { cancel(); _ = srv.Wait() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		res, err := runIperf(port, rate, length, secs, extra...)
		if err == nil {
			return res, nil
		}
		// Through a relay the control connection is accepted at once and
		// reset when the relay finds no server yet: both mean "not up".
		notUp := strings.Contains(err.Error(), "unable to connect") ||
			strings.Contains(err.Error(), "unable to receive control message")
		if i == 20 || !notUp {
			return res, err
		}
		<-tick.C
	}
}

// TestUDPBenchmark measures, side by side, iperf3 -u directly and through
// anyedge (edge and region in this process): the highest rate of 1200-byte
// payloads under 1 % loss, and 64-byte packets per second, with one flow
// and with 64. It runs only with ANYEDGE_UDP_BENCH=1 (bench/udp.sh); with
// ANYEDGE_UDP_PROFILE=file it writes a CPU profile of the anyedge 1200-byte
// run at the highest passing rate.
func TestUDPBenchmark(t *testing.T) {
	if os.Getenv("ANYEDGE_UDP_BENCH") == "" {
		t.Skip("set ANYEDGE_UDP_BENCH=1 (bench/udp.sh)")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed")
	}
	secs := 3
	if s := os.Getenv("ANYEDGE_UDP_BENCH_SECS"); s != "" {
		secs, _ = strconv.Atoi(s)
	}
	f := newFleet(t, "pop-1")
	iport := freeUDPPort(t)
	port := freeUDPPort(t)
	tcpRelay(t, port, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(iport))))
	ep := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), iport)
	r := f.startRegion(t, "127.0.0.1:0", []gateway.Endpoint{gatewayEndpoint("iperf-1", ep, port, false)})
	e := f.startEdge(t, "pop-1", r.addr(), edgeOpts{port: port, endpoints: []string{"iperf-1"}})
	bport := freeUDPPort(t)
	tcpRelay(t, bport, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(iport))))
	bareRelay(t, f, bport, ep)

	paths := []struct {
		name string
		port uint16
	}{{"direct", iport}, {"anyedge", port}, {"bare quic-go datagrams", bport}}
	rates := []int{100, 200, 300, 400, 500, 600, 700, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000}
	type row struct{ path, what, result string }
	var rows []row
	for _, p := range paths {
		for _, flows := range []int{1, 64} {
			best, bestLoss := 0, 0.0
			var bestCPU float64
			for _, rate := range rates {
				per := fmt.Sprintf("%dK", rate*1000/flows) // exact: 500 Mbit/s over 64 flows is 7812K each
				c0, k0, e0, r0 := cpuTime(), kernelUDPDrops(), e.fwd.Stats().FromClient, r.gw.UDPStats().ToEndpoint
				res, err := benchIperf(t, iport, p.port, per, 1200, secs, "-w", "4M", "-P", strconv.Itoa(flows))
				cpu := cpuTime() - c0
				if p.name == "anyedge" {
					t.Logf("  edge read %d, region wrote %d to the endpoint, kernel receive-buffer drops %d",
						e.fwd.Stats().FromClient-e0, r.gw.UDPStats().ToEndpoint-r0, kernelUDPDrops()-k0)
				}
				if err != nil {
					t.Logf("%s %d flows at %d Mbit/s: %v", p.name, flows, rate, err)
					break
				}
				s := res.End.Sum
				t.Logf("%s %d flows at %d Mbit/s: got %.0f Mbit/s, loss %.2f%%", p.name, flows, rate, s.BitsPerSecond/1e6, s.LostPercent)
				if s.LostPercent >= 1 {
					break
				}
				best, bestLoss = rate, s.LostPercent
				if recv := float64(s.Packets - s.LostPackets); recv > 0 {
					bestCPU = cpu.Seconds() / recv * 1e6
				}
			}
			cpuNote := ""
			if p.name != "direct" {
				cpuNote = fmt.Sprintf("; %.2f CPU s per million packets (both relay ends)", bestCPU)
			}
			rows = append(rows, row{p.name, fmt.Sprintf("1200 B, %d flow(s), highest rate < 1%% loss", flows),
				fmt.Sprintf("%d Mbit/s (loss %.2f%%)%s", best, bestLoss, cpuNote)})
		}
		for _, flows := range []int{1, 64} {
			c0 := cpuTime()
			res, err := benchIperf(t, iport, p.port, fmt.Sprintf("%dM", 200/flows), 64, secs, "-w", "4M", "-P", strconv.Itoa(flows))
			cpu := cpuTime() - c0
			if err != nil {
				t.Logf("%s 64 B: %v", p.name, err)
				continue
			}
			s := res.End.Sum
			recv := float64(s.Packets - s.LostPackets)
			cpuNote := ""
			if p.name != "direct" && recv > 0 {
				cpuNote = fmt.Sprintf("; %.2f CPU s per million packets", cpu.Seconds()/recv*1e6)
			}
			rows = append(rows, row{p.name, fmt.Sprintf("64 B, %d flow(s), 200 Mbit/s (390 kpps) offered", flows),
				fmt.Sprintf("%.0f kpps delivered (loss %.1f%%)%s", recv/float64(secs)/1e3, s.LostPercent, cpuNote)})
		}
	}
	if prof := os.Getenv("ANYEDGE_UDP_PROFILE"); prof != "" {
		out, err := os.Create(prof)
		require.NoError(t, err)
		require.NoError(t, pprof.StartCPUProfile(out))
		_, err = benchIperf(t, iport, port, "500M", 1200, secs, "-w", "4M")
		pprof.StopCPUProfile()
		_ = out.Close()
		require.NoError(t, err)
	}
	t.Logf("edge %+v", e.fwd.Stats())
	t.Logf("region %+v", r.gw.UDPStats())
	fmt.Println("| path | measurement | result |")
	fmt.Println("|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r.path, r.what, r.result)
	}
}
