// Command rtt measures the floor under a new flow's latency on this
// machine: the round trip of a 1-byte echo over plain UDP, over an open
// quic-go stream, and over a new quic-go stream per echo, either inside one
// process or between two.
//
//	rtt -mode stream                       # client and server in this process
//	rtt -serve 127.0.0.1:45000 &           # server in another process
//	rtt -mode newstream -addr 127.0.0.1:45000
//
// The server answers UDP echoes and QUIC on the same port. -trace writes a
// runtime/trace (read it with go tool trace -pprof=syscall or =sched).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/signal"
	"runtime/trace"
	"slices"
	"time"

	"github.com/quic-go/quic-go"
)

const alpn = "anyedge-rtt"

func main() {
	mode := flag.String("mode", "stream", "udp, stream (one open stream) or newstream (a new stream per echo)")
	n := flag.Int("n", 2000, "echoes")
	serve := flag.String("serve", "", "only serve QUIC echo on this UDP address")
	addr := flag.String("addr", "", "echo server address (default: one started in this process)")
	traceFile := flag.String("trace", "", "write a runtime/trace of the run to this file")
	flag.Parse()
	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rtt:", err)
			os.Exit(1)
		}
		_ = trace.Start(f)
		defer func() { trace.Stop(); _ = f.Close() }()
	}
	if err := run(*mode, *n, *serve, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "rtt:", err)
		os.Exit(1)
	}
}

func run(mode string, n int, serve, addr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if serve != "" || addr == "" {
		listen := serve
		if listen == "" {
			listen = "127.0.0.1:0"
		}
		a, err := startServer(ctx, mode, listen)
		if err != nil {
			return err
		}
		if serve != "" {
			<-ctx.Done()
			return nil
		}
		addr = a
	}
	var ds []time.Duration
	var err error
	if mode == "udp" {
		ds, err = udpEchoes(addr, n)
	} else {
		ds, err = quicEchoes(ctx, mode == "newstream", addr, n)
	}
	if err != nil {
		return err
	}
	slices.Sort(ds)
	us := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Nanoseconds()) / 1e3 }
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"mode": mode, "n": len(ds), "p50_us": us(0.5), "p99_us": us(0.99)})
}

// startServer serves UDP echo (mode udp) or QUIC stream echo on listen.
func startServer(ctx context.Context, mode, listen string) (string, error) {
	if mode == "udp" {
		c, err := net.ListenPacket("udp", listen)
		if err != nil {
			return "", err
		}
		context.AfterFunc(ctx, func() { _ = c.Close() })
		go func() {
			buf := make([]byte, 64)
			for {
				k, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = c.WriteTo(buf[:k], from)
			}
		}()
		return c.LocalAddr().String(), nil
	}
	cert, err := selfSigned()
	if err != nil {
		return "", err
	}
	ln, err := quic.ListenAddr(listen, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{alpn}}, &quic.Config{})
	if err != nil {
		return "", err
	}
	context.AfterFunc(ctx, func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				for {
					s, err := conn.AcceptStream(ctx)
					if err != nil {
						return
					}
					go func() {
						_, _ = io.Copy(s, s)
						_ = s.Close()
					}()
				}
			}()
		}
	}()
	return ln.Addr().String(), nil
}

func udpEchoes(addr string, n int) ([]time.Duration, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf := make([]byte, 64)
	var ds []time.Duration
	for range n {
		t := time.Now()
		if _, err := c.Write([]byte{1}); err != nil {
			return nil, err
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(buf); err != nil {
			return nil, err
		}
		ds = append(ds, time.Since(t))
	}
	return ds, nil
}

func quicEchoes(ctx context.Context, newStream bool, addr string, n int) ([]time.Duration, error) {
	// The server's certificate is made at its start; this measures
	// latency, not authentication.
	conn, err := quic.DialAddr(ctx, addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}}, &quic.Config{})
	if err != nil {
		return nil, err
	}
	defer conn.CloseWithError(0, "")
	var ds []time.Duration
	buf := make([]byte, 1)
	var s *quic.Stream
	for range n {
		t := time.Now()
		if s == nil || newStream {
			if s, err = conn.OpenStream(); err != nil {
				return nil, err
			}
		}
		if _, err := s.Write([]byte{1}); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			return nil, err
		}
		ds = append(ds, time.Since(t))
		if newStream {
			_ = s.Close()
		}
	}
	return ds, nil
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"rtt"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
