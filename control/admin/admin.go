// Package admin is a node's local HTTP API, bound to a loopback address:
// status, liveness, readiness, Prometheus metrics, and the drain and
// undrain commands used by `anyedge ctl`.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Node is what the API exposes of a running node.
type Node interface {
	// Status returns a JSON-encodable snapshot of the node.
	Status() any
	// Ready reports whether the node should receive traffic.
	Ready() bool
}

// Drainer is implemented by nodes that can drain (edges).
type Drainer interface {
	Drain() error
	Undrain() error
}

// Server serves the admin API.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr (a loopback host:port; port 0 picks one).
func Listen(addr string, n Node, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !n.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(n.Status())
	})
	if reg != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	command := func(f func(Drainer) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			d, ok := n.(Drainer)
			if !ok {
				http.Error(w, "this node does not drain", http.StatusNotImplemented)
				return
			}
			if err := f(d); err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			_, _ = io.WriteString(w, "ok\n")
		}
	}
	mux.HandleFunc("POST /drain", command(Drainer.Drain))
	mux.HandleFunc("POST /undrain", command(Drainer.Undrain))
	if log != nil {
		log.Info("admin API listening", "addr", ln.Addr().String())
	}
	return &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx ends, then shuts down and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("admin: %w", err)
	}
}

// Call sends one command (status, drain, undrain, ready) to the admin API
// at addr and returns the body of the answer.
func Call(ctx context.Context, addr, command string) (string, error) {
	method, path := http.MethodGet, "/status"
	switch command {
	case "status":
	case "ready":
		path = "/readyz"
	case "drain", "undrain":
		method, path = http.MethodPost, "/"+command
	default:
		return "", fmt.Errorf("unknown command %q (status, ready, drain, undrain)", command)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("admin API at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return string(b), fmt.Errorf("admin API at %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}
