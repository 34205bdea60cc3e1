//go:build linux

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// blob is what the endpoint serves, repeated up to the requested size.
var blob = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}()

// serveBlob answers GET /blob?size=N with N bytes.
func serveBlob(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	if err != nil || n < 0 || n > 1<<30 {
		http.Error(w, "size: want 0 … 1 GiB", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	for n > 0 {
		k := min(n, int64(len(blob)))
		if _, err := w.Write(blob[:k]); err != nil {
			return
		}
		n -= k
	}
}

// serve runs the endpoint: HTTP on httpAddr and HTTPS (a self-signed
// certificate made at start) on httpsAddr, until SIGTERM or SIGINT.
func serve(httpAddr, httpsAddr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/blob", serveBlob)
	lnHTTP, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return err
	}
	lnTLS, err := net.Listen("tcp", httpsAddr)
	if err != nil {
		return err
	}
	lnTLS = tls.NewListener(lnTLS, &tls.Config{Certificates: []tls.Certificate{cert}})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	fmt.Println("ready")
	var g errgroup.Group
	for _, ln := range []net.Listener{lnHTTP, lnTLS} {
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return g.Wait()
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wanbench endpoint"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"endpoint"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// writeSelfSigned writes a fresh self-signed certificate and its key (mode
// 0600, as the edge demands) as PEM files.
func writeSelfSigned(certFile, keyFile string) error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644)
}
