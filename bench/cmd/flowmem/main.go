// Command flowmem measures the memory an edge and a region hold per idle
// flow: it runs `anyedge region` and `anyedge edge` as processes of their
// own on 127.0.0.1 (certificates from `anyedge certs`), serves their
// endpoints itself, opens N TCP flows through the edge (each echoed once,
// then left idle), reads both processes' resident memory (VmRSS), closes
// them, and does the same with N UDP flows (one datagram each way). It
// prints one line per protocol and process, and a JSON summary.
//
//	flowmem -bin ./anyedge -flows 100000
//
// Needs root for the descriptor limit (it raises RLIMIT_NOFILE to 1<<20;
// its children inherit it). Clients use source addresses 127.0.1.1–8 and
// endpoints 127.0.0.1–8, so that no address pair runs out of ports.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anyedge/anyedge/bench/internal/fleet"
)

const spread = 8 // source and endpoint addresses

func main() {
	bin := flag.String("bin", "anyedge", "the anyedge binary")
	flows := flag.Int("flows", 100000, "flows per protocol")
	settle := flag.Duration("settle", 3*time.Second, "wait before each reading")
	flag.Parse()
	if err := run(*bin, *flows, *settle); err != nil {
		fmt.Fprintln(os.Stderr, "flowmem:", err)
		os.Exit(1)
	}
}

// result is one protocol's reading.
type result struct {
	Protocol         string  `json:"protocol"`
	Flows            int     `json:"flows"`
	EdgeBaseMiB      float64 `json:"edge_base_mib"`
	EdgeMiB          float64 `json:"edge_mib"`
	EdgeBytesPerFlow float64 `json:"edge_bytes_per_flow"`
	RegionBaseMiB    float64 `json:"region_base_mib"`
	RegionMiB        float64 `json:"region_mib"`
	RegionBytesPer   float64 `json:"region_bytes_per_flow"`
	SetupSeconds     float64 `json:"setup_seconds"`
}

func run(bin string, n int, settle time.Duration) error {
	lim := syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		// Without CAP_SYS_RESOURCE only the hard limit can be had.
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return err
		}
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return err
		}
		// This process holds two descriptors per TCP flow.
		if most := int(lim.Max)/2 - 1000; n > most {
			fmt.Fprintf(os.Stderr, "flowmem: descriptor limit %d (raising it needs CAP_SYS_RESOURCE): %d flows instead of %d\n", lim.Max, most, n)
			n = most
		}
	}
	dir, err := os.MkdirTemp("", "flowmem")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ports, err := fleet.FreePorts(6)
	if err != nil {
		return err
	}
	tcpPort, udpPort, epPort, adminPoP, adminRegion, backbone := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]

	// Endpoints: TCP echo of the first bytes, then idle; UDP echo.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var held sync.Map // endpoint-side TCP conns, closed at the end
	for i := 1; i <= spread; i++ {
		a := netip.AddrFrom4([4]byte{127, 0, 0, byte(i)})
		ln, err := net.Listen("tcp", netip.AddrPortFrom(a, uint16(epPort)).String())
		if err != nil {
			return err
		}
		uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(epPort))))
		if err != nil {
			return err
		}
		context.AfterFunc(ctx, func() { _ = ln.Close(); _ = uc.Close() })
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				held.Store(c, true)
				go func() { // one read and echo; then the conn idles
					b := make([]byte, 16)
					if k, err := c.Read(b); err == nil {
						_, _ = c.Write(b[:k])
					}
				}()
			}
		})
		wg.Go(func() {
			b := make([]byte, 2048)
			for {
				k, from, err := uc.ReadFromUDPAddrPort(b)
				if err != nil {
					return
				}
				_, _ = uc.WriteToUDPAddrPort(b[:k], from)
			}
		})
	}
	defer held.Range(func(k, _ any) bool { _ = k.(net.Conn).Close(); return true })

	f, err := fleet.New(bin, dir, configDoc(tcpPort, udpPort, epPort, adminPoP, adminRegion, backbone, n), "pop", "region")
	if err != nil {
		return err
	}
	var results []result
	for _, proto := range []string{"tcp", "udp"} {
		// Fresh processes for each protocol: a heap that held the other
		// protocol's flows would lend them its free memory.
		r, err := measure(f, proto, n, settle, tcpPort, udpPort, adminPoP)
		if err != nil {
			return err
		}
		fmt.Printf("%s: %d flows set up in %.1fs; edge RSS %.1f → %.1f MiB (%.0f bytes/flow); region RSS %.1f → %.1f MiB (%.0f bytes/flow)\n",
			proto, n, r.SetupSeconds, r.EdgeBaseMiB, r.EdgeMiB, r.EdgeBytesPerFlow, r.RegionBaseMiB, r.RegionMiB, r.RegionBytesPer)
		results = append(results, r)
		held.Range(func(k, _ any) bool { _ = k.(net.Conn).Close(); held.Delete(k); return true })
	}
	return json.NewEncoder(os.Stdout).Encode(results)
}

// measure runs a region and an edge, reads their memory, opens n flows
// of proto, reads it again, and stops them.
func measure(f *fleet.Fleet, proto string, n int, settle time.Duration, tcpPort, udpPort, adminPoP int) (result, error) {
	r := result{Protocol: proto, Flows: n}
	region, err := f.Start("region", "region")
	if err != nil {
		return r, err
	}
	defer fleet.Stop(region, syscall.SIGINT)
	edge, err := f.Start("edge", "pop")
	if err != nil {
		return r, err
	}
	defer fleet.Stop(edge, syscall.SIGINT)
	if err := fleet.WaitReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPoP), 60*time.Second); err != nil {
		return r, err
	}
	time.Sleep(settle)
	r.EdgeBaseMiB, r.RegionBaseMiB = fleet.RSS(edge.Process.Pid), fleet.RSS(region.Process.Pid)
	begin := time.Now()
	closeAll, err := open(proto, n, tcpPort, udpPort)
	if err != nil {
		return r, err
	}
	defer closeAll()
	r.SetupSeconds = time.Since(begin).Seconds()
	time.Sleep(settle)
	r.EdgeMiB, r.RegionMiB = fleet.RSS(edge.Process.Pid), fleet.RSS(region.Process.Pid)
	r.EdgeBytesPerFlow = (r.EdgeMiB - r.EdgeBaseMiB) * (1 << 20) / float64(n)
	r.RegionBytesPer = (r.RegionMiB - r.RegionBaseMiB) * (1 << 20) / float64(n)
	return r, nil
}

// open opens n flows of proto through the edge, each echoed once, and
// returns what closes them.
func open(proto string, n, tcpPort, udpPort int) (func(), error) {
	conns := make([]net.Conn, 0, n)
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	next := make(chan int)
	for range 256 {
		wg.Go(func() {
			b := make([]byte, 16)
			for i := range next {
				src := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i%spread)})
				var c net.Conn
				var err error
				if proto == "tcp" {
					d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 30 * time.Second}
					c, err = d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort))
				} else {
					c, err = net.DialUDP("udp", &net.UDPAddr{IP: src.AsSlice()}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udpPort})
				}
				if err == nil {
					err = echo(c, b, proto == "udp")
				}
				mu.Lock()
				if c != nil {
					conns = append(conns, c)
				}
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("%s flow %d: %w", proto, i, err)
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		closeAll()
		return nil, firstErr
	}
	return closeAll, nil
}

// echo sends a few bytes and waits for them back (UDP: resending on loss).
func echo(c net.Conn, b []byte, udp bool) error {
	msg := []byte("flowmem")
	for try := 0; ; try++ {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		// UDP resends after 2 s; a TCP flow gets 10 s, since 256 dialers
		// at once on a loaded 2-core machine can queue a setup for seconds.
		wait := 10 * time.Second
		if udp {
			wait = 2 * time.Second
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		_, err := io.ReadAtLeast(c, b, len(msg))
		if err == nil || !udp || try == 10 {
			_ = c.SetReadDeadline(time.Time{})
			return err
		}
	}
}

func configDoc(tcpPort, udpPort, epPort, adminPoP, adminRegion, backbone, n int) string {
	var eps strings.Builder
	for i := 1; i <= spread; i++ {
		fmt.Fprintf(&eps, "              - {id: %%s-%d, address: \"127.0.0.%d:%d\"}\n", i, i, epPort)
	}
	hc := fmt.Sprintf("{protocol: tcp, port: %d, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}", epPort)
	return fmt.Sprintf(`accelerators:
  - name: flowmem
    ip_addresses: [127.0.0.1]
    listeners:
      - protocol: tcp
        port_ranges: [{from: %d}]
        endpoint_groups:
          - region: region
            health_check: %s
            endpoints:
%s      - protocol: udp
        port_ranges: [{from: %d}]
        idle_timeout: 1h
        endpoint_groups:
          - region: region
            health_check: %s
            endpoints:
%stopology:
  pki_dir: {{PKI}}
  pops:
    - name: pop
      admin: 127.0.0.1:%d
      udp: {max_flows: %d, max_flows_per_source: %d}
  regions:
    - name: region
      admin: 127.0.0.1:%d
      backbone: {listen: "127.0.0.1:%d"}
`, tcpPort, hc, strings.ReplaceAll(eps.String(), "%s", "tcp"), udpPort, hc, strings.ReplaceAll(eps.String(), "%s", "udp"),
		adminPoP, 2*n, 2*n, adminRegion, backbone)
}
