// Package dev runs a whole fleet document in one process for a laptop: a
// throwaway in-memory PKI, every region and edge of the document, and demo
// endpoints on the endpoints' loopback addresses.
package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"golang.org/x/sync/errgroup"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/dashboard"
	"github.com/anyedge/anyedge/control/node"
)

// Options configures a dev run.
type Options struct {
	Doc     *config.Document
	Version string
	Logger  *slog.Logger
	// Out receives the "what to try next" text once everything serves.
	Out io.Writer
	// Dashboard is the loopback host:port of the fleet's dashboard page;
	// empty means DefaultDashboard.
	Dashboard string
}

// DefaultDashboard is where `anyedge dev` serves the fleet's dashboard.
const DefaultDashboard = "127.0.0.1:9190"

// Run starts demo endpoints, every region, then every edge of the
// document, prints what to try, and runs until ctx ends.
func Run(ctx context.Context, opts Options) error {
	doc := opts.Doc
	names := doc.NodeNames()
	p, err := pki.NewEphemeral(names...)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	// The fleet stops in anycast order too: the edges first (they run
	// under gctx), the regions once no edge is left (an edge whose region
	// vanished under it would redial it while it stops).
	rctx, stopRegions := context.WithCancel(context.WithoutCancel(gctx))
	defer stopRegions()
	var edges sync.WaitGroup
	// fail stops what was started (the group's context ends with err)
	// and returns err once every goroutine of the group has returned.
	fail := func(err error) error {
		g.Go(func() error { return err })
		edges.Wait()
		stopRegions()
		_ = g.Wait()
		return err
	}
	demos, err := startDemos(gctx, g, doc, opts.Logger)
	if err != nil {
		return fail(err)
	}
	udpDemos, err := startUDPDemos(gctx, g, doc, opts.Logger) // see udpdemo.go
	if err != nil {
		return fail(err)
	}
	demos = append(demos, udpDemos...)
	boardLn, err := listenDashboard(opts.Dashboard)
	if err != nil {
		return fail(err)
	}
	board := "http://" + boardLn.Addr().String() + "/"
	// ready counts the nodes not serving yet; regionsUp, the regions.
	var ready, regionsUp sync.WaitGroup
	for i, name := range names {
		store, err := p.Store(name, opts.Logger)
		if err != nil {
			_ = boardLn.Close()
			return fail(err)
		}
		ctx, isEdge := rctx, i >= len(doc.Topology.Regions)
		if isEdge {
			if i == len(doc.Topology.Regions) {
				// An edge dials its regions as it starts: it starts once
				// every region's backbone is bound, so that a normal start
				// logs no failed dial.
				if waitOrDone(gctx, &regionsUp); gctx.Err() != nil {
					break // a region failed: the group returns its error
				}
			}
			ctx = gctx
			edges.Add(1)
		} else {
			regionsUp.Add(1)
		}
		ready.Add(1)
		var once sync.Once
		up := func() {
			once.Do(func() {
				ready.Done()
				if !isEdge {
					regionsUp.Done()
				}
			})
		}
		g.Go(func() error {
			defer up()
			if isEdge {
				defer edges.Done()
			}
			err := node.Run(ctx, node.Options{
				Doc: doc, Node: name, Version: opts.Version, Logger: opts.Logger, Store: store,
				Ready: up,
			})
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		edges.Wait()
		stopRegions()
		return nil
	})
	g.Go(func() error {
		ready.Wait()
		if gctx.Err() != nil {
			return boardLn.Close()
		}
		if opts.Out != nil {
			printHints(opts.Out, doc, demos, board)
		}
		// The dashboard polls once every node serves, so that a normal
		// start shows (and logs) no node as unreachable.
		d := dashboard.New(dashboard.FleetTargets(doc, nil), dashboard.Options{Title: "dev", Logger: opts.Logger})
		return d.Serve(gctx, boardLn)
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// startDemos serves a small HTTP server on every endpoint address that is a
// loopback address with a port.
func startDemos(ctx context.Context, g *errgroup.Group, doc *config.Document, log *slog.Logger) ([]string, error) {
	var started []string
	var lns []net.Listener
	fail := func(err error) ([]string, error) {
		for _, ln := range lns {
			_ = ln.Close()
		}
		return nil, err
	}
	for _, d := range loopbackEndpoints(doc, "tcp") {
		e := d.endpoint
		ln, err := net.Listen("tcp", e.Address)
		if err != nil {
			return fail(fmt.Errorf("demo endpoint %s: %w", e.ID, err))
		}
		lns = append(lns, ln)
		if e.ClientIPPreservation {
			ln = &proxyproto.Listener{Listener: ln}
		}
		srv := &http.Server{Handler: demoHandler(e.ID), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("demo endpoint %s: %w", e.ID, err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			_ = srv.Shutdown(sctx)
			return srv.Close()
		})
		started = append(started, e.ID+" on "+e.Address)
		if log != nil {
			log.Info("demo endpoint serving", "endpoint", e.ID, "addr", e.Address)
		}
	}
	return started, nil
}

func demoHandler(id string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Anyedge-Endpoint", id)
		_, _ = fmt.Fprintf(w, "hello from %s through anyedge (client %s)\n", id, r.RemoteAddr)
	})
	return mux
}

// listenDashboard binds the dashboard's address (DefaultDashboard if
// empty).
func listenDashboard(addr string) (net.Listener, error) {
	if addr == "" {
		addr = DefaultDashboard
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return ln, nil
}

func printHints(w io.Writer, doc *config.Document, demos []string, board string) {
	fmt.Fprintln(w, "anyedge dev is up:")
	for _, d := range demos {
		fmt.Fprintf(w, "  demo endpoint %s\n", d)
	}
	fmt.Fprintf(w, "  dashboard on %s\n", board)
	for _, a := range doc.Accelerators {
		for _, l := range a.Listeners {
			for _, ip := range a.IPAddresses {
				port := l.PortRanges[0].From
				addr := net.JoinHostPort(ip, fmt.Sprint(port))
				switch l.Protocol {
				case "tcp":
					fmt.Fprintf(w, "try:  curl http://%s/\n", addr)
				case "udp":
					fmt.Fprintf(w, "try:  dig +short @%s -p %d TXT hello.anyedge\n", ip, port)
				}
			}
		}
	}
	if doc.DNS != nil && len(doc.DNS.Listen) > 0 {
		if ap, err := netip.ParseAddrPort(doc.DNS.Listen[0]); err == nil {
			for _, a := range doc.Accelerators {
				fmt.Fprintf(w, "try:  dig +short @%s -p %d %s.%s\n", ap.Addr(), ap.Port(), a.DNSName, strings.TrimSuffix(doc.DNS.Zone, "."))
			}
		}
	}
	fmt.Fprintln(w, "Ctrl-C stops everything.")
}

// demoTarget is an endpoint of the document that a demo server can stand in
// for: its address is a loopback address with a port.
type demoTarget struct {
	endpoint config.Endpoint
	addr     netip.AddrPort
}

// loopbackEndpoints lists the endpoints of proto listeners whose address is
// a loopback address with a port, in document order.
func loopbackEndpoints(doc *config.Document, proto string) []demoTarget {
	var out []demoTarget
	for _, a := range doc.Accelerators {
		for _, l := range a.Listeners {
			if l.Protocol != proto {
				continue
			}
			for _, grp := range l.EndpointGroups {
				for _, e := range grp.Endpoints {
					if ap, err := netip.ParseAddrPort(e.Address); err == nil && ap.Addr().IsLoopback() {
						out = append(out, demoTarget{endpoint: e, addr: ap})
					}
				}
			}
		}
	}
	return out
}

// waitOrDone waits for wg, or for ctx to end (a node failed): every node
// counted in wg calls Done when it serves or returns, so the helper
// goroutine ends either way.
func waitOrDone(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
