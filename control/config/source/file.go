// Package source delivers a node's fleet document from where it lives —
// a file, or a key of an etcd cluster — and watches it: every new reading
// goes through config.Parse, the same as at start-up and in `anyedge
// validate`, and reaches the node as a config.Update, valid or not, for
// the node to reload (control/node) or keep what it runs.
package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/internal/filewatch"
)

// File is a document in a file. It is read again when the file, or a
// file it names (Document.Files: allow and deny lists), changes (written
// in place, renamed over, its link swapped: internal/filewatch), and
// whenever Reread fires (SIGHUP).
type File struct {
	// Path is the file.
	Path string
	// Options are the load options (the environment's overrides).
	Options config.LoadOptions
	// Reread, when it fires, reads the file whether or not it changed.
	Reread <-chan struct{}
	// Logger receives the source's events; nil discards them.
	Logger *slog.Logger

	loadedKey string // what Load read, for Run
}

// String names the source for /status and logs.
func (f *File) String() string { return "file " + f.Path }

// Load reads and parses the file once (start-up), and remembers what the
// files it names held then, for Run.
func (f *File) Load() (config.Loaded, error) {
	l, key, err := f.read()
	f.loadedKey = key
	return l, err
}

// read reads and parses the file, and returns with the reading the key of
// its whole configuration (contentKey).
func (f *File) read() (config.Loaded, string, error) {
	l, err := config.ParseFile(f.Path, f.Options)
	return l, contentKey(l), err
}

// Run watches the file until ctx ends and sends each new reading on out:
// after a change of the file or of a file it names that gives another
// configuration than the last valid reading (the same bytes, touched or
// changed back and forth within the settling time, are no change), a
// different error, or anything after an error; and after every Reread.
// first is the start-up reading (Load), which the node runs. An update whose
// document has the same bytes as the last one but whose named files
// changed, or that Reread asked for, is forced (config.Update.Force).
// When the file cannot be watched (no inotify left, say) Run says so and
// goes on with Reread only.
func (f *File) Run(ctx context.Context, first config.Loaded, out chan<- config.Update) error {
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "config-source", "file", f.Path)
	paths := func(l config.Loaded) []string {
		if l.Doc == nil {
			return []string{f.Path}
		}
		return append([]string{f.Path}, l.Doc.Files()...)
	}
	var (
		changes <-chan struct{}
		w       *filewatch.Watcher
		done    = make(chan error, 1)
	)
	if fw, err := filewatch.New(paths(first), filewatch.Options{}); err != nil {
		log.Warn("cannot watch the config file; it is read again on SIGHUP only", "err", err)
	} else {
		w = fw
		wctx, stop := context.WithCancel(ctx)
		go func() { done <- w.Run(wctx) }()
		defer func() { stop(); <-done }()
		changes = w.Changes()
	}
	self, _ := filepath.Abs(f.Path)
	last, lastKey := first.Revision, f.loadedKey
	if first.Revision != "" && lastKey == "" {
		lastKey = contentKey(first) // Load was not called
	}
	var lastErr string // the last reading's error
	// A change between the start-up reading and the watch would be
	// missed: look once now.
	look := make(chan struct{}, 1)
	look <- struct{}{}
	for {
		trigger := "file changed"
		select {
		case <-ctx.Done():
			return nil
		case err := <-done:
			log.Warn("the config file's watch failed; it is read again on SIGHUP only", "err", err)
			changes, w, done = nil, nil, make(chan error, 1)
			done <- nil // for the deferred wait
			continue
		case <-look:
		case <-changes:
			if named := slices.DeleteFunc(w.Changed(), func(p string) bool { return p == self }); len(named) > 0 {
				trigger = "file changed: " + strings.Join(named, ", ")
			}
		case <-f.Reread:
			trigger = "sighup"
		}
		l, key, err := f.read()
		u := config.Update{Loaded: l, Err: err, Trigger: trigger, Force: trigger == "sighup"}
		if err != nil {
			if err.Error() == lastErr && !u.Force {
				continue
			}
			lastErr = err.Error()
		} else {
			if w != nil {
				if err := w.Watch(paths(l)); err != nil {
					log.Warn("cannot watch a file the document names; it is read again on SIGHUP", "err", err)
				}
			}
			if key == lastKey && lastErr == "" && !u.Force {
				continue
			}
			// The same document, other named files: its bytes say
			// nothing new, its meaning does.
			u.Force = u.Force || (l.Revision == last && key != lastKey)
			last, lastKey, lastErr = l.Revision, key, ""
		}
		log.Debug("document read", "trigger", trigger, "revision", l.Revision, "err", err)
		select {
		case out <- u:
		case <-ctx.Done():
			return nil
		}
	}
}

// contentKey identifies a valid reading's whole configuration: the
// document's revision and the contents of the files it names.
func contentKey(l config.Loaded) string {
	if l.Doc == nil {
		return ""
	}
	h := sha256.New()
	h.Write([]byte(l.Revision))
	for _, name := range l.Doc.Files() {
		b, err := os.ReadFile(name)
		if err != nil {
			b = []byte(err.Error())
		}
		fmt.Fprintf(h, "\x00%s\x00%d\x00", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}
