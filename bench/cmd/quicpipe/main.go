// Command quicpipe is the transport ceiling of the anyedge benchmarks: a
// bare quic-go TCP→QUIC→TCP relay pair with the same flow-control windows
// and UDP socket buffers as the backbone, and none of anyedge's routing,
// header, answer byte or health machinery.
//
//	quicpipe server -listen 127.0.0.1:7000 -target 127.0.0.1:5201
//	quicpipe client -listen 127.0.0.1:7001 -server 127.0.0.1:7000
//
// The client accepts TCP connections and carries each one as a QUIC stream
// on one long-lived connection (-conns spreads them round-robin over more);
// the server dials -target for every stream. The server's TLS certificate is
// self-signed and generated at start; the client does not verify it (this is
// a benchmark on loopback, not a tunnel to deploy). Both print "ready" on
// stdout once they serve, and stop on SIGINT or SIGTERM.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone"
)

const alpn = "anyedge-bench-quicpipe"

// quicConfig mirrors backbone/quicconf.go (windows, stream limits,
// datagrams); keep the two in step so that the ceiling stays comparable.
func quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           2 * time.Second,
		MaxIdleTimeout:                 backbone.DefaultIdleTimeout,
		KeepAlivePeriod:                backbone.DefaultKeepAlivePeriod,
		InitialStreamReceiveWindow:     backbone.StreamWindow,
		MaxStreamReceiveWindow:         backbone.StreamWindow,
		InitialConnectionReceiveWindow: backbone.ConnectionWindow,
		MaxConnectionReceiveWindow:     backbone.ConnectionWindow,
		MaxIncomingStreams:             backbone.MaxStreamsPerConn,
		MaxIncomingUniStreams:          -1,
		EnableDatagrams:                true,
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: quicpipe server|client [flags]")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "quicpipe-"+os.Args[1])
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "server: UDP address; client: TCP address")
	target := fs.String("target", "", "server: TCP address dialled for every stream")
	server := fs.String("server", "", "client: UDP address of the quicpipe server")
	conns := fs.Int("conns", 1, "client: QUIC connections to spread streams over")
	_ = fs.Parse(os.Args[2:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "server":
		err = runServer(ctx, log, *listen, *target, printReady)
	case "client":
		err = runClient(ctx, log, *listen, *server, *conns, printReady)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("quicpipe failed", "err", err)
		os.Exit(1)
	}
}

func udpSocket(addr string, log *slog.Logger) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", addr, err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("listen udp: %w", err)
	}
	backbone.SetSocketBuffers(c, log)
	return c, nil
}

// printReady tells a parent process the address served.
func printReady(a net.Addr) { fmt.Printf("ready %s\n", a) }

// runServer accepts QUIC connections on listen and relays every stream to
// a new TCP connection to target, until ctx ends. ready is called with the
// bound address.
func runServer(ctx context.Context, log *slog.Logger, listen, target string, ready func(net.Addr)) error {
	if target == "" {
		return errors.New("server: -target is required")
	}
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	udp, err := udpSocket(listen, log)
	if err != nil {
		return err
	}
	tr := &quic.Transport{Conn: udp}
	defer func() { _ = tr.Close(); _ = udp.Close() }()
	ln, err := tr.Listen(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{alpn}, MinVersion: tls.VersionTLS13}, quicConfig())
	if err != nil {
		return fmt.Errorf("quic listen: %w", err)
	}
	defer func() { _ = ln.Close() }()
	ready(udp.LocalAddr())
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return err
		}
		wg.Go(func() {
			for {
				str, err := conn.AcceptStream(ctx)
				if err != nil {
					return
				}
				wg.Go(func() {
					c, err := net.DialTimeout("tcp", target, 3*time.Second)
					if err != nil {
						str.CancelRead(1)
						str.CancelWrite(1)
						return
					}
					join(c.(*net.TCPConn), str)
				})
			}
		})
	}
}

// runClient dials n QUIC connections to server, accepts TCP connections on
// listen and carries each as a stream, until ctx ends. ready is called with
// the bound TCP address.
func runClient(ctx context.Context, log *slog.Logger, listen, server string, n int, ready func(net.Addr)) error {
	if server == "" {
		return errors.New("client: -server is required")
	}
	if n < 1 {
		n = 1
	}
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}, MinVersion: tls.VersionTLS13} //nolint:gosec // benchmark on loopback
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return fmt.Errorf("resolve %q: %w", server, err)
	}
	var qconns []*quic.Conn
	for range n {
		udp, err := udpSocket("127.0.0.1:0", log)
		if err != nil {
			return err
		}
		tr := &quic.Transport{Conn: udp}
		defer func() { _ = tr.Close(); _ = udp.Close() }()
		var qc *quic.Conn
		deadline := time.Now().Add(10 * time.Second)
		for {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			qc, err = tr.Dial(dctx, raddr, tlsConf, quicConfig())
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("dial %s: %w", server, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		qconns = append(qconns, qc)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen tcp: %w", err)
	}
	stopLn := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stopLn()
	ready(ln.Addr())
	var wg sync.WaitGroup
	defer wg.Wait()
	var next atomic.Uint64
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("accept: %w", err)
		}
		qc := qconns[next.Add(1)%uint64(len(qconns))]
		wg.Go(func() {
			str, err := qc.OpenStreamSync(ctx)
			if err != nil {
				_ = c.Close()
				return
			}
			join(c.(*net.TCPConn), str)
		})
	}
}

// join copies both ways until both directions have ended; a FIN on one
// side becomes a FIN on the other.
func join(c *net.TCPConn, s *quic.Stream) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		if _, err := io.CopyBuffer(s, onlyReader{c}, buf); err != nil {
			s.CancelWrite(1)
			return
		}
		_ = s.Close()
	}()
	buf := make([]byte, 64<<10)
	if _, err := io.CopyBuffer(onlyWriter{c}, s, buf); err != nil {
		s.CancelRead(1)
	}
	_ = c.CloseWrite()
	<-done
	_ = c.Close()
}

// onlyReader and onlyWriter hide ReadFrom/WriteTo so that io.CopyBuffer
// uses the given buffer, as backbone/splice does.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "quicpipe"},
		DNSNames:     []string{"quicpipe"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
