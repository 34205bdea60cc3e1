// Command dnsbench measures anyedge's authoritative DNS server (edge/dns,
// with its zone lookup, EDNS handling and response-rate limiting) against
// a bare miekg/dns server that answers every query with one fixed A record
// (the ceiling), side by side: rounds alternate between the two, each with
// the same number of concurrent UDP clients asking the same question in a
// closed loop. It prints queries per second and latency percentiles per
// server and the ratio of the medians.
//
//	go run ./bench/cmd/dnsbench [-clients 64] [-duration 5s] [-rounds 3]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	dnsedge "github.com/anyedge/anyedge/edge/dns"
)

const qname = "web.accel.example.net."

func main() {
	clients := flag.Int("clients", 64, "concurrent clients, each with its own UDP socket")
	duration := flag.Duration("duration", 5*time.Second, "length of one round")
	rounds := flag.Int("rounds", 3, "rounds per server, alternating")
	flag.Parse()
	if err := run(os.Stdout, *clients, *duration, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

// result is one round against one server.
type result struct {
	queries  int64
	lost     int64
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (r result) qps() float64 { return float64(r.queries) / r.elapsed.Seconds() }

func run(w io.Writer, clients int, duration time.Duration, rounds int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	anyedge, stopA, err := startAnyedge(ctx)
	if err != nil {
		return err
	}
	defer stopA()
	bare, stopB, err := startBare()
	if err != nil {
		return err
	}
	defer stopB()

	servers := []struct {
		name string
		addr netip.AddrPort
	}{{"bare miekg/dns (fixed A record)", bare}, {"anyedge edge/dns", anyedge}}
	results := make([][]result, len(servers))
	// A short warm-up of each, then alternate.
	for _, s := range servers {
		if _, err := load(s.addr, clients, duration/5); err != nil {
			return err
		}
	}
	for r := range rounds {
		for i, s := range servers {
			res, err := load(s.addr, clients, duration)
			if err != nil {
				return err
			}
			results[i] = append(results[i], res)
			fmt.Fprintf(os.Stderr, "round %d %-32s %8.0f q/s  p50 %v  p99 %v  lost %d\n",
				r+1, s.name, res.qps(), res.p50, res.p99, res.lost)
		}
	}
	fmt.Fprintf(w, "%d clients, %d rounds of %v per server, alternating; median round shown\n\n", clients, rounds, duration)
	fmt.Fprintln(w, "| server | queries/s | p50 | p99 | lost |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	medians := make([]result, len(servers))
	for i, s := range servers {
		rs := slices.Clone(results[i])
		slices.SortFunc(rs, func(a, b result) int { return int(a.qps() - b.qps()) })
		m := rs[len(rs)/2]
		medians[i] = m
		fmt.Fprintf(w, "| %s | %.0f | %v | %v | %d |\n", s.name, m.qps(), m.p50.Round(time.Microsecond), m.p99.Round(time.Microsecond), m.lost)
	}
	fmt.Fprintf(w, "\nanyedge / bare: %.1f %% of the queries per second\n", 100*medians[1].qps()/medians[0].qps())
	return nil
}

// startAnyedge runs edge/dns with a one-name zone and rate limiting on (at
// a rate the benchmark never reaches, so that its cost is paid but it
// never drops).
func startAnyedge(ctx context.Context) (netip.AddrPort, func(), error) {
	z, err := dnsedge.NewZone(dnsedge.ZoneConfig{
		Origin: "accel.example.net", TTL: 300 * time.Second, NSTTL: time.Hour,
		SOA: dnsedge.SOA{MName: "ns1.accel.example.net", RName: "hostmaster.accel.example.net", Serial: 1,
			Refresh: time.Hour, Retry: time.Hour, Expire: time.Hour, Minimum: time.Minute},
		Nameservers: []dnsedge.Nameserver{{Name: "ns1.accel.example.net", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.53")}}},
		Names:       []dnsedge.Name{{Name: "web", Accelerator: "web", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.10")}}},
	})
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	s, err := dnsedge.New(dnsedge.Config{Listen: []string{"127.0.0.1:0"},
		RRL: dnsedge.RRLConfig{ResponsesPerSecond: 1_000_000, Slip: 2}}, z)
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	if err := s.Listen(); err != nil {
		return netip.AddrPort{}, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.Run(ctx) })
	return s.Addrs()[0], func() { cancel(); wg.Wait() }, nil
}

// startBare runs a miekg/dns server that answers one fixed A record.
func startBare() (netip.AddrPort, func(), error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	rr := &dns.A{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(203, 0, 113, 10)}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		m.Answer = []dns.RR{rr}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.ActivateAndServe() })
	<-started
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), func() { _ = srv.Shutdown(); wg.Wait() }, nil
}

// load runs clients closed-loop clients against addr for d: each sends a
// query, waits for its answer (a query unanswered within 500 ms is lost),
// and sends the next.
func load(addr netip.AddrPort, clients int, d time.Duration) (result, error) {
	q := new(dns.Msg).SetQuestion(qname, dns.TypeA)
	q.RecursionDesired = false
	query, err := q.Pack()
	if err != nil {
		return result{}, err
	}
	var queries, lost atomic.Int64
	lat := make([][]time.Duration, clients)
	errs := make(chan error, clients)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := slices.Clone(query)
			buf := make([]byte, 1500)
			var id uint16
			for time.Now().Before(deadline) {
				id++
				msg[0], msg[1] = byte(id>>8), byte(id)
				t0 := time.Now()
				if _, err := c.Write(msg); err != nil {
					errs <- err
					return
				}
				_ = c.SetReadDeadline(t0.Add(500 * time.Millisecond))
				for {
					n, err := c.Read(buf)
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						lost.Add(1)
						break
					}
					if err != nil {
						errs <- err
						return
					}
					if n >= 12 && buf[0] == msg[0] && buf[1] == msg[1] {
						lat[i] = append(lat[i], time.Since(t0))
						queries.Add(1)
						break
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return result{}, err
	default:
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return result{}, errors.New("no query was answered")
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return result{queries: queries.Load(), lost: lost.Load(), elapsed: elapsed, p50: pct(0.50), p99: pct(0.99)}, nil
}
