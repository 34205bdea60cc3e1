// Package dashboard is the health dashboard: a live web page that shows a
// fleet — every PoP and region named in the document, or one node alone —
// by reading each node's admin status.
//
// A Dashboard polls every node on its own goroutine (with a timeout, so a
// node that hangs or is gone only shows as unreachable, with the error),
// hands each answer to one goroutine that owns the fleet's state, keeps a
// few minutes of history (flow rates, backbone RTT) and pushes the state to
// open pages as server-sent events. The page (assets/, embedded) draws
// everything itself; it fetches nothing from elsewhere.
package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Defaults of Options.
const (
	// DefaultInterval is how often each node is polled and a history
	// sample is taken.
	DefaultInterval = time.Second
	// DefaultTimeout bounds one poll of one node.
	DefaultTimeout = 2 * time.Second
	// DefaultHistory is how much history the graphs show.
	DefaultHistory = 3 * time.Minute
)

// Source reads one node's status document (the JSON of its /status).
type Source interface {
	Status(ctx context.Context) ([]byte, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context) ([]byte, error)

// Status implements Source.
func (f SourceFunc) Status(ctx context.Context) ([]byte, error) { return f(ctx) }

// Local is the Source of a node in this process: status returns the
// node's snapshot (admin.Node.Status).
func Local(status func() any) Source {
	return SourceFunc(func(context.Context) ([]byte, error) { return json.Marshal(status()) })
}

// Target is one node the dashboard shows.
type Target struct {
	// Name of the node in the topology.
	Name string
	// Role is "edge" or "region".
	Role string
	// Addr is where the node is read, shown on the page; empty for Local.
	Addr string
	// Source reads its status. A Source with a Close() method is closed
	// when Run returns.
	Source Source
}

// Options tune a Dashboard. The zero value of each field is its default.
type Options struct {
	// Title heads the page, e.g. "fleet" or a node's name.
	Title string
	// Interval between polls of a node, and between history samples.
	Interval time.Duration
	// Timeout of one poll.
	Timeout time.Duration
	// History is how far back the graphs reach.
	History time.Duration
	// Logger receives nodes going unreachable and coming back.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Dashboard polls a fleet and serves its page (Handler). Run it to poll.
type Dashboard struct {
	opts    Options
	targets []Target
	log     *slog.Logger

	// mu guards pub; Run's goroutine replaces it.
	mu  sync.Mutex
	pub published
}

// published is what the page is sent.
type published struct {
	nodes, hist       []byte        // JSON of the "nodes" and "history" events
	nodesSeq, histSeq uint64        // count the publications of each
	changed           chan struct{} // closed at the next publication
}

// New returns a dashboard of targets.
func New(targets []Target, opts Options) *Dashboard {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{opts: opts, targets: targets, log: opts.Logger.With("component", "dashboard"),
		pub: published{changed: make(chan struct{})}}
	st := newFleetState(d.opts, targets)
	d.publish(st, true)
	return d
}

// result is one poll of one node.
type result struct {
	i    int // index into targets
	body []byte
	err  error
	at   time.Time
}

// Run polls every target until ctx ends, then returns nil.
func (d *Dashboard) Run(ctx context.Context) error {
	defer func() {
		for _, t := range d.targets {
			if c, ok := t.Source.(interface{ Close() }); ok {
				c.Close()
			}
		}
	}()
	results := make(chan result)
	var wg sync.WaitGroup
	for i, t := range d.targets {
		wg.Go(func() { d.poll(ctx, i, t.Source, results) })
	}
	defer wg.Wait()

	st := newFleetState(d.opts, d.targets)
	tick := time.NewTicker(d.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-results:
			if was, now := st.apply(r); was != now {
				t := d.targets[r.i]
				if now {
					d.log.Info("node reachable", "node", t.Name)
				} else {
					d.log.Warn("node unreachable", "node", t.Name, "err", r.err)
				}
			}
			d.publish(st, false)
		case <-tick.C:
			st.sample(d.opts.Now())
			d.publish(st, true)
		}
	}
}

// poll reads one target every interval until ctx ends.
func (d *Dashboard) poll(ctx context.Context, i int, src Source, out chan<- result) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
		body, err := src.Status(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil && !json.Valid(body) {
			err = errors.New("status is not JSON")
		}
		select {
		case out <- result{i: i, body: body, err: err, at: d.opts.Now()}:
		case <-ctx.Done():
			return
		}
		timer.Reset(max(0, d.opts.Interval-time.Since(start)))
	}
}

// publish encodes st for the page and wakes every event stream.
func (d *Dashboard) publish(st *fleetState, history bool) {
	nodes, err := json.Marshal(st.nodesEvent(d.opts.Title, d.opts.Interval))
	if err != nil {
		d.log.Error("encode dashboard state", "err", err)
		return
	}
	var hist []byte
	if history {
		if hist, err = json.Marshal(st.historyEvent()); err != nil {
			d.log.Error("encode dashboard history", "err", err)
			return
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	close(d.pub.changed)
	d.pub.changed = make(chan struct{})
	d.pub.nodes = nodes
	d.pub.nodesSeq++
	if history {
		d.pub.hist = hist
		d.pub.histSeq++
	}
}

// current returns what is published now; its changed channel is closed at
// the next publication.
func (d *Dashboard) current() published {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pub
}
