// Package source delivers a node's fleet document from where it lives —
// a file, or a key of an etcd cluster — and watches it: every new reading
// goes through config.Parse, the same as at start-up and in `anyedge
// validate`, and reaches the node as a config.Update, valid or not, for
// the node to reload (control/node) or keep what it runs.
package source

import (
	"context"
	"log/slog"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/internal/filewatch"
)

// File is a document in a file. It is read again when the file changes
// (written in place, renamed over, its link swapped: internal/filewatch)
// and whenever Reread fires (SIGHUP).
type File struct {
	// Path is the file.
	Path string
	// Options are the load options (the environment's overrides).
	Options config.LoadOptions
	// Reread, when it fires, reads the file whether or not it changed.
	Reread <-chan struct{}
	// Logger receives the source's events; nil discards them.
	Logger *slog.Logger
}

// String names the source for /status and logs.
func (f *File) String() string { return "file " + f.Path }

// Load reads and parses the file once.
func (f *File) Load() (config.Loaded, error) { return config.ParseFile(f.Path, f.Options) }

// Run watches the file until ctx ends and sends each new reading on out:
// after a change that gives other bytes than the last valid reading (a
// change back and forth within the settling time is no change), a
// different error, or anything after an error; and after every Reread.
// last is the revision the node runs. When the file cannot be watched (no
// inotify left, say) it says so and goes on with Reread only.
func (f *File) Run(ctx context.Context, last config.Revision, out chan<- config.Update) error {
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "config-source", "file", f.Path)
	var changes <-chan struct{}
	done := make(chan error, 1)
	if w, err := filewatch.New([]string{f.Path}, filewatch.Options{}); err != nil {
		log.Warn("cannot watch the config file; it is read again on SIGHUP only", "err", err)
	} else {
		wctx, stop := context.WithCancel(ctx)
		go func() { done <- w.Run(wctx) }()
		defer func() { stop(); <-done }()
		changes = w.Changes()
	}
	var lastErr string // the last reading's error
	// A change between the start-up reading and the watch would be
	// missed: look once now.
	first := make(chan struct{}, 1)
	first <- struct{}{}
	for {
		var trigger string
		select {
		case <-ctx.Done():
			return nil
		case <-first:
			trigger = "file changed"
		case err := <-done:
			log.Warn("the config file's watch failed; it is read again on SIGHUP only", "err", err)
			changes, done = nil, make(chan error, 1)
			done <- nil // for the deferred wait
			continue
		case <-changes:
			trigger = "file changed"
		case <-f.Reread:
			trigger = "sighup"
		}
		l, err := f.Load()
		switch {
		case err != nil:
			if err.Error() == lastErr && trigger == "file changed" {
				continue
			}
			lastErr = err.Error()
		case l.Revision == last && lastErr == "" && trigger == "file changed":
			continue // after an error, the same bytes again say it is fixed
		default:
			last, lastErr = l.Revision, ""
		}
		log.Debug("document read", "trigger", trigger, "revision", l.Revision, "err", err)
		select {
		case out <- config.Update{Loaded: l, Err: err, Trigger: trigger}:
		case <-ctx.Done():
			return nil
		}
	}
}
