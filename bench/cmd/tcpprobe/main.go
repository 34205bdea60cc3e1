// Command tcpprobe measures new-connection costs for the anyedge
// benchmarks and serves the endpoint they talk to.
//
//	tcpprobe echo    -listen 127.0.0.1:7000          # echo server; holds idle connections
//	tcpprobe latency -addr 127.0.0.1:7000 -n 2000    # sequential connect + 1-byte echo
//	tcpprobe rate    -addr 127.0.0.1:7000 -workers 64 -duration 5s
//	tcpprobe hold    -addr 127.0.0.1:7000 -n 10000   # open, echo once, keep open
//
// latency, rate and hold print one JSON object on stdout. hold prints it
// once every connection is established end to end, then keeps them open
// until SIGINT, SIGTERM or end of stdin. echo prints "ready ADDR".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tcpprobe echo|latency|rate|hold [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "echo: TCP address to serve")
	addr := fs.String("addr", "", "address to connect to")
	n := fs.Int("n", 2000, "latency: connections; hold: connections to hold")
	workers := fs.Int("workers", 64, "rate: concurrent workers; hold: concurrent openers")
	dur := fs.Duration("duration", 5*time.Second, "rate: how long to run")
	timeout := fs.Duration("timeout", 3*time.Second, "per-connection timeout")
	_ = fs.Parse(os.Args[2:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var out any
	var err error
	switch os.Args[1] {
	case "echo":
		err = serveEcho(ctx, *listen, func(a net.Addr) { fmt.Printf("ready %s\n", a) })
	case "latency":
		out, err = latency(*addr, *n, *timeout)
	case "rate":
		out, err = rate(*addr, *workers, *dur, *timeout)
	case "hold":
		err = hold(ctx, *addr, *n, *workers, *timeout)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "tcpprobe:", err)
		os.Exit(1)
	}
	if out != nil {
		_ = json.NewEncoder(os.Stdout).Encode(out)
	}
}

// serveEcho echoes every connection accepted on listen until ctx ends;
// ready is called with the bound address.
func serveEcho(ctx context.Context, listen string, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]struct{}{}
	stopLn := context.AfterFunc(ctx, func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	defer stopLn()
	ready(ln.Addr())
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			var buf [512]byte
			_, _ = io.CopyBuffer(onlyWriter{c}, onlyReader{c}, buf[:])
			_ = c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}

type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// once connects, sends one byte, reads it back and returns the open
// connection.
func once(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	b := [1]byte{'x'}
	if _, err := c.Write(b[:]); err != nil {
		_ = c.Close()
		return nil, err
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// LatencyResult is what latency prints; times in microseconds.
type LatencyResult struct {
	N      int     `json:"n"`
	Errors int     `json:"errors"`
	P50    float64 `json:"p50_us"`
	P99    float64 `json:"p99_us"`
	P999   float64 `json:"p999_us"`
	Max    float64 `json:"max_us"`
}

func latency(addr string, n int, timeout time.Duration) (LatencyResult, error) {
	if addr == "" {
		return LatencyResult{}, errors.New("-addr is required")
	}
	ds := make([]time.Duration, 0, n)
	errs := 0
	for range n {
		start := time.Now()
		c, err := once(addr, timeout)
		if err != nil {
			errs++
			continue
		}
		ds = append(ds, time.Since(start))
		_ = c.Close()
	}
	if len(ds) == 0 {
		return LatencyResult{}, fmt.Errorf("no connection succeeded out of %d", n)
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		i := int(p * float64(len(ds)))
		if i >= len(ds) {
			i = len(ds) - 1
		}
		return float64(ds[i].Nanoseconds()) / 1e3
	}
	return LatencyResult{N: len(ds), Errors: errs, P50: q(0.50), P99: q(0.99), P999: q(0.999), Max: q(1)}, nil
}

// RateResult is what rate prints.
type RateResult struct {
	Conns   int64   `json:"conns"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_sec"`
}

func rate(addr string, workers int, dur, timeout time.Duration) (RateResult, error) {
	if addr == "" {
		return RateResult{}, errors.New("-addr is required")
	}
	var ok, bad atomic.Int64
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Now().Before(end) {
				c, err := once(addr, timeout)
				if err != nil {
					bad.Add(1)
					continue
				}
				_ = c.Close()
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	return RateResult{Conns: ok.Load(), Errors: bad.Load(), Seconds: secs, PerSec: float64(ok.Load()) / secs}, nil
}

// HoldResult is what hold prints once the connections are up.
type HoldResult struct {
	Held   int `json:"held"`
	Errors int `json:"errors"`
}

func hold(ctx context.Context, addr string, n, workers int, timeout time.Duration) error {
	if addr == "" {
		return errors.New("-addr is required")
	}
	conns := make([]net.Conn, n)
	var errs atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := once(addr, timeout)
				if err != nil {
					errs.Add(1)
					continue
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	held := 0
	for _, c := range conns {
		if c != nil {
			held++
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(HoldResult{Held: held, Errors: int(errs.Load())})
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-ctx.Done():
	case <-eof:
	}
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	return nil
}
