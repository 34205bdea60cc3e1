package dashboard

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

//go:embed assets
var assets embed.FS

// Handler serves the page and its data, relative to where it is mounted
// (the page's links are relative): GET / the page, /app.js and /style.css
// its code, /api/state the current state as one JSON document, /api/events
// the live stream (server-sent events "nodes" on every poll, "history" on
// every sample).
func (d *Dashboard) Handler() http.Handler {
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(static)
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /app.js", files)
	mux.Handle("GET /style.css", files)
	mux.HandleFunc("GET /api/state", d.serveState)
	mux.HandleFunc("GET /api/events", d.serveEvents)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Everything the page uses comes from here: no other origin, no
		// inline script.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r)
	})
}

func (d *Dashboard) serveState(w http.ResponseWriter, r *http.Request) {
	p := d.current()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, `{"nodes":%s,"history":%s}`+"\n", p.nodes, p.hist)
}

// serveEvents streams the state until the client goes away. A slow client
// skips states; it always gets the latest.
func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	var sent published
	for {
		p := d.current()
		if p.histSeq != sent.histSeq || sent.changed == nil {
			if _, err := fmt.Fprintf(w, "event: history\ndata: %s\n\n", p.hist); err != nil {
				return
			}
		}
		if p.nodesSeq != sent.nodesSeq || sent.changed == nil {
			if _, err := fmt.Fprintf(w, "event: nodes\ndata: %s\n\n", p.nodes); err != nil {
				return
			}
		}
		flusher.Flush()
		sent = p
		select {
		case <-p.changed:
		case <-r.Context().Done():
			return
		}
	}
}

// Serve polls the fleet (Run) and serves the page on ln until ctx ends,
// then closes ln and returns nil, or the first error.
func (d *Dashboard) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second,
		// Event streams end with ctx.
		BaseContext: func(net.Listener) context.Context { return ctx }}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.Run(gctx) })
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("dashboard: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		return srv.Close()
	})
	return g.Wait()
}
