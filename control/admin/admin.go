// Package admin is a node's HTTP API: status, liveness, readiness,
// Prometheus metrics, the dashboard page, Go's profiles (/debug/pprof/),
// and the commands used by `anyedge ctl`: drain and undrain, custom routing
// allows and denies, and run-time overrides (weights, traffic dials, reset).
//
// The API is served in plain HTTP on a loopback address, and optionally on
// a second, remote address with mutual TLS: there a request must carry an
// operator certificate of the fleet's CA (backbone/pki), any role for reads
// and the admin role for state-changing calls; every other request is
// answered 401 or 403 and logged.
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
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/anyedge/anyedge/backbone/pki"
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

// PagePath is where the API serves Options.Page; GET / redirects there.
const PagePath = "/dashboard/"

// ProfilePath is where the API serves Go's runtime profiles
// (net/http/pprof: CPU, heap, goroutines, mutex, block, execution trace).
const ProfilePath = "/debug/pprof/"

// Options configure a node's admin API.
type Options struct {
	// Addr is the loopback host:port of the plain-HTTP API; port 0 picks
	// one. Required.
	Addr string
	// Remote, when not empty, is a host:port where the same API is served
	// with mutual TLS to operators holding a certificate of the fleet's CA.
	Remote string
	// Store presents the node's certificate on Remote and holds the CA pool
	// operator certificates must chain to. Required with Remote.
	Store *pki.Store
	// Node is what the API shows and commands. Required.
	Node Node
	// Registry, when set, is served at /metrics; the API registers its own
	// counter of refused remote requests in it.
	Registry *prometheus.Registry
	// Page, when set, is served under PagePath (with the prefix stripped):
	// the node's own dashboard.
	Page http.Handler
	// Logger receives the API's logs; nil discards them.
	Logger *slog.Logger
}

// maxHeaderBytes bounds a request's header (net/http's default is 1 MiB;
// no admin request needs more than a few hundred bytes), and idleTimeout
// closes keep-alive connections left idle.
const (
	maxHeaderBytes = 64 << 10
	idleTimeout    = time.Minute
)

// Server serves the admin API.
type Server struct {
	ln, remote  net.Listener // remote is nil without Options.Remote
	srv, srvTLS *http.Server
	log         *slog.Logger
	refused     *refusals
}

// Listen binds the API's addresses.
func Listen(opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "admin")
	if opts.Remote != "" && opts.Store == nil {
		return nil, errors.New("admin: a remote address needs the node's certificates")
	}
	s := &Server{log: log, refused: newRefusals(log, opts.Registry)}
	mux := s.mux(opts)
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: local(mux), ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: maxHeaderBytes,
		IdleTimeout: idleTimeout}
	if opts.Remote != "" {
		rl, err := net.Listen("tcp", opts.Remote)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("admin: remote: %w", err)
		}
		s.remote = rl
		s.srvTLS = &http.Server{
			Handler:           s.operatorsOnly(opts.Store, mux),
			TLSConfig:         pki.AdminServerConfig(opts.Store),
			ReadHeaderTimeout: 5 * time.Second,
			MaxHeaderBytes:    maxHeaderBytes,
			IdleTimeout:       idleTimeout,
			// Refused handshakes (a client that does not trust the node)
			// are the client's business; refused requests are logged.
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		log.Info("admin API listening", "addr", ln.Addr().String(), "remote", rl.Addr().String(), "remote_auth", "mutual TLS, operator certificates")
	} else {
		log.Info("admin API listening", "addr", ln.Addr().String())
	}
	return s, nil
}

func (s *Server) mux(opts Options) *http.ServeMux {
	n := opts.Node
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
	if opts.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
	}
	if opts.Page != nil {
		mux.Handle(PagePath, http.StripPrefix(PagePath[:len(PagePath)-1], opts.Page))
		mux.Handle("GET /{$}", http.RedirectHandler(PagePath, http.StatusFound))
	}
	command := func(name string, f func(Drainer) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			d, ok := n.(Drainer)
			if !ok {
				http.Error(w, "this node does not drain", http.StatusNotImplemented)
				return
			}
			s.log.Info("admin command", "command", name, "by", caller(r.Context()), "remote", r.RemoteAddr)
			if err := f(d); err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			_, _ = io.WriteString(w, "ok\n")
		}
	}
	// Go's profiles, for a data path that costs more CPU than it should:
	// `go tool pprof http://ADMIN/debug/pprof/profile?seconds=10`. A CPU
	// profile or trace runs for as long as asked, so remotely they need
	// the admin role (see profiling).
	mux.HandleFunc(ProfilePath, pprof.Index)
	mux.HandleFunc(ProfilePath+"cmdline", pprof.Cmdline)
	mux.HandleFunc(ProfilePath+"profile", pprof.Profile)
	mux.HandleFunc(ProfilePath+"symbol", pprof.Symbol)
	mux.HandleFunc(ProfilePath+"trace", pprof.Trace)
	mux.HandleFunc("POST /drain", command("drain", Drainer.Drain))
	mux.HandleFunc("POST /undrain", command("undrain", Drainer.Undrain))
	s.customRoutes(mux, n)
	s.overrideRoutes(mux, n)
	return mux
}

// Addr is the bound loopback address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// RemoteAddr is the bound remote (mutual TLS) address, or "" without one.
func (s *Server) RemoteAddr() string {
	if s.remote == nil {
		return ""
	}
	return s.remote.Addr().String()
}

// Serve serves until ctx ends, then shuts down and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	serve := func(srv *http.Server, ln net.Listener, tls bool) {
		// Requests end with ctx, so that long ones (the dashboard's event
		// stream) do not hold up the shutdown.
		srv.BaseContext = func(net.Listener) context.Context { return gctx }
		g.Go(func() error {
			var err error
			if tls {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("admin: %w", err)
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if srv.Shutdown(sctx) != nil {
				_ = srv.Close()
			}
			return nil
		})
	}
	serve(s.srv, s.ln, false)
	if s.remote != nil {
		serve(s.srvTLS, s.remote, true)
	}
	return g.Wait()
}
