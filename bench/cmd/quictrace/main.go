// Command quictrace measures one QUIC connection of the backbone's
// configuration (its flow-control windows) through the WAN lab's emulated
// backbone, with and without forward error correction (backbone/fec): one
// download per condition on a fresh connection, the sender's congestion
// window, smoothed RTT and losses sampled as it goes. It is the evidence
// for BENCHMARKS.md's "one flow on a clean backbone" and for what FEC does
// to quic-go's window. Needs root (network namespaces, TUN devices).
//
//	go run ./bench/cmd/quictrace -rtt 200ms -loss 0,0.1,1 -fec off,on -size 200000000 -plot cwnd.png
//
// With QLOGDIR set, quic-go writes a qlog of each connection end there
// (congestion window, packets declared lost and why).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/fec"
	"github.com/anyedge/anyedge/internal/wanem"
	"github.com/anyedge/anyedge/internal/wanlab"
)

type sample struct {
	T          float64 `json:"t_s"`
	Cwnd       uint64  `json:"cwnd_bytes"`
	SRTT       float64 `json:"srtt_ms"`
	Lost       uint64  `json:"quic_lost"`
	Received   int64   `json:"received_bytes"`
	EmuLost    uint64  `json:"emu_lost"`
	EmuQueue   uint64  `json:"emu_queue_full"`
	Recovered  uint64  `json:"fec_recovered"`
	ParitySent uint64  `json:"fec_parity_sent"`
}

type result struct {
	Loss    float64 `json:"loss_pct"`
	FEC     bool    `json:"fec"`
	Run     int     `json:"run"`
	Seconds float64 `json:"seconds"`
	Mbit    float64 `json:"mbit_s"`
	// Err is why the download ended early (the connection closed).
	Err     string   `json:"error,omitempty"`
	Samples []sample `json:"samples"`
}

func main() {
	rtt := flag.Duration("rtt", 200*time.Millisecond, "backbone round-trip time")
	losses := flag.String("loss", "0,0.1,1", "random loss per direction, percent")
	fecs := flag.String("fec", "off,on", "FEC settings to measure")
	rate := flag.Int64("rate-mbit", 200, "link rate")
	queue := flag.Duration("queue", 50*time.Millisecond, "drop-tail queue of the rate limiter, as time at the link rate")
	size := flag.Int64("size", 200_000_000, "download size, bytes")
	runs := flag.Int("runs", 2, "downloads per condition on one connection (the first from a fresh connection)")
	every := flag.Duration("every", 200*time.Millisecond, "sampling interval")
	out := flag.String("out", "", "write every sample here as JSON")
	plotFile := flag.String("plot", "", "draw the congestion window of every download here (PNG)")
	plotSecs := flag.Duration("plot-span", 10*time.Second, "the time axis of the figure")
	from := flag.String("from", "", "draw -plot from this -out file of an earlier run instead of measuring")
	flag.Parse()
	if *from != "" {
		if err := replot(*from, *plotFile, *plotSecs); err != nil {
			fmt.Fprintln(os.Stderr, "quictrace:", err)
			os.Exit(1)
		}
		return
	}
	span = *plotSecs
	if err := run(*rtt, *losses, *fecs, *rate, *queue, *size, *runs, *every, *out, *plotFile); err != nil {
		fmt.Fprintln(os.Stderr, "quictrace:", err)
		os.Exit(1)
	}
}

func run(rtt time.Duration, losses, fecs string, rateMbit int64, queue time.Duration, size int64, runs int,
	every time.Duration, out, plotFile string) error {
	if err := wanlab.Available(); err != nil {
		return err
	}
	rate := rateMbit * 1_000_000
	qbytes := int(float64(rate) / 8 * queue.Seconds())
	shape := func(loss float64) wanlab.Shape {
		return wanlab.Symmetric(wanem.Params{Delay: rtt / 2, Loss: loss / 100, RateBits: rate, QueueBytes: qbytes, Seed: 11})
	}
	lab, err := wanlab.Up(wanlab.Config{Name: fmt.Sprintf("qt%d", os.Getpid()), Realtime: true, Backbone: shape(0)})
	if err != nil {
		return err
	}
	defer lab.Close()
	var results []result
	fmt.Printf("backbone %v RTT, %d Mbit/s, %v drop-tail queue (%d bytes), %d MB per download, %d downloads per connection\n\n",
		rtt, rateMbit, queue, qbytes, size/1_000_000, runs)
	fmt.Println("| loss | FEC | run | Mbit/s | largest cwnd | cwnd at end | quic-go lost | emulator lost | queue full | rebuilt |")
	fmt.Println("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, ls := range strings.Split(losses, ",") {
		loss, err := strconv.ParseFloat(ls, 64)
		if err != nil {
			return err
		}
		for _, fs := range strings.Split(fecs, ",") {
			if err := lab.Set(wanlab.Backbone, shape(loss)); err != nil {
				return err
			}
			rs, err := measure(lab, fs == "on", loss, size, runs, every)
			if err != nil {
				return err
			}
			for _, r := range rs {
				var maxCwnd uint64
				for _, s := range r.Samples {
					maxCwnd = max(maxCwnd, s.Cwnd)
				}
				last := r.Samples[len(r.Samples)-1]
				mbit := fmt.Sprintf("%.0f", r.Mbit)
				if r.Err != "" {
					mbit = fmt.Sprintf("closed after %.1f s, %.0f MB: %s", r.Seconds, float64(last.Received)/1e6, r.Err)
				}
				fmt.Printf("| %g %% | %s | %d | %s | %.1f MB | %.1f MB | %d | %d | %d | %d |\n", loss, fs, r.Run, mbit,
					float64(maxCwnd)/1e6, float64(last.Cwnd)/1e6, last.Lost, last.EmuLost, last.EmuQueue, last.Recovered)
			}
			results = append(results, rs...)
		}
	}
	if plotFile != "" {
		title := fmt.Sprintf("one QUIC connection, %v RTT, %d Mbit/s, %v queue, %d MB downloads", rtt, rateMbit, queue, size/1_000_000)
		if err := plotCwnd(results, title, plotFile, span); err != nil {
			return err
		}
	}
	if out != "" {
		b, err := json.MarshalIndent(results, "", " ")
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	}
	return nil
}

// measure opens one connection from the PoP to the region and downloads
// size bytes runs times over it.
func measure(lab *wanlab.Lab, withFEC bool, loss float64, size int64, runs int, every time.Duration) ([]result, error) {
	listen := func(role, host string) (u *net.UDPConn, err error) {
		err = lab.Do(role, func() error {
			u, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host)})
			if err == nil {
				backbone.SetSocketBuffers(u, slog.Default())
			}
			return err
		})
		return u, err
	}
	su, err := listen(wanlab.Region, wanlab.RegionBackbone.String())
	if err != nil {
		return nil, err
	}
	defer su.Close()
	cu, err := listen(wanlab.PoP, wanlab.PoPBackbone.String())
	if err != nil {
		return nil, err
	}
	defer cu.Close()
	sc, cc := fec.NewConn(su, fec.Config{}), fec.NewConn(cu, fec.Config{})
	defer sc.Close()
	defer cc.Close()
	st, ct := &quic.Transport{Conn: sc}, &quic.Transport{Conn: cc}
	defer st.Close()
	defer ct.Close()
	cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	qconf := &quic.Config{
		InitialStreamReceiveWindow: backbone.StreamWindow, MaxStreamReceiveWindow: backbone.StreamWindow,
		InitialConnectionReceiveWindow: backbone.ConnectionWindow, MaxConnectionReceiveWindow: backbone.ConnectionWindow,
		MaxIdleTimeout: 30 * time.Second, KeepAlivePeriod: time.Second,
	}
	if os.Getenv("QLOGDIR") != "" {
		qconf.Tracer = qlog.DefaultConnectionTracer // one file per connection end in $QLOGDIR
	}
	ln, err := st.Listen(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"qt"}}, qconf)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := ct.Dial(ctx, su.LocalAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"qt"}}, qconf)
	if err != nil {
		return nil, err
	}
	defer client.CloseWithError(0, "")
	server, ok := <-accepted
	if !ok {
		return nil, errors.New("no connection accepted")
	}
	if withFEC {
		sc.Enable(server.RemoteAddr())
		cc.Enable(client.RemoteAddr())
	}
	chunk := make([]byte, 1<<20)
	var rs []result
	for r := range runs {
		emu0 := lab.Stats(wanlab.Backbone)
		sent := make(chan error, 1)
		go func() {
			s, err := server.OpenStreamSync(ctx)
			if err != nil {
				sent <- err
				return
			}
			for left := size; left > 0 && err == nil; left -= int64(len(chunk)) {
				_, err = s.Write(chunk[:min(left, int64(len(chunk)))])
			}
			if err == nil {
				err = s.Close()
			}
			sent <- err
		}()
		s, err := client.AcceptStream(ctx)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		res := result{Loss: loss, FEC: withFEC, Run: r}
		var got atomic.Int64
		done := make(chan error, 1)
		go func() {
			buf := make([]byte, 1<<20)
			for {
				n, err := s.Read(buf)
				got.Add(int64(n))
				if err != nil {
					if errors.Is(err, io.EOF) {
						err = nil
					}
					done <- err
					return
				}
			}
		}()
		tick := time.NewTicker(every)
		var rerr error
	loop:
		for {
			select {
			case rerr = <-done:
				break loop
			case <-tick.C:
				res.Samples = append(res.Samples, snap(start, server, lab, emu0, sc, cc, &got))
			}
		}
		tick.Stop()
		if rerr != nil {
			// A connection quic-go closed (such as "too many gaps in
			// received data") is a finding: keep what was sampled.
			res.Err = rerr.Error()
			res.Seconds = time.Since(start).Seconds()
			res.Samples = append(res.Samples, snap(start, server, lab, emu0, sc, cc, &got))
			<-sent
			return append(rs, res), nil
		}
		if err := <-sent; err != nil {
			return nil, err
		}
		res.Seconds = time.Since(start).Seconds()
		res.Mbit = float64(size) * 8 / res.Seconds / 1e6
		res.Samples = append(res.Samples, snap(start, server, lab, emu0, sc, cc, &got))
		rs = append(rs, res)
	}
	return rs, nil
}

// snap samples the sender (the region's end, sc its socket) and what the
// receiver (the PoP's socket cc) rebuilt.
func snap(start time.Time, server *quic.Conn, lab *wanlab.Lab, emu0 wanem.Stats, sc, cc *fec.Conn, got *atomic.Int64) sample {
	cs := server.ConnectionStats()
	emu := lab.Stats(wanlab.Backbone).Sub(emu0)
	return sample{T: time.Since(start).Seconds(), Cwnd: cs.CongestionWindow, SRTT: float64(cs.SmoothedRTT) / 1e6,
		Lost: cs.PacketsLost, Received: got.Load(), EmuLost: emu.Lost, EmuQueue: emu.QueueFull,
		Recovered: cc.Stats().Recovered, ParitySent: sc.Stats().ParitySent}
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"region"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
