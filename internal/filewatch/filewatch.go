// Package filewatch tells when files change: written in place, replaced
// by a rename (as editors and configuration management do), or swapped
// behind a symbolic link (as Kubernetes does with mounted ConfigMaps). It
// watches each file's directory with fsnotify, since a watch on the file
// itself ends with the file an editor renames away, and on every event in
// those directories it compares what each file now is (device, inode,
// size, modification time, following links) with what it was. A burst of
// changes is reported once, after it settles.
package filewatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultSettle is how long a burst of events must be quiet before a
// change is reported (Options.Settle): long enough to cover an editor's
// truncate-then-write or write-then-rename.
const DefaultSettle = 100 * time.Millisecond

// Options tune a Watcher.
type Options struct {
	// Settle is how long the files must be quiet before a change is
	// reported (default DefaultSettle).
	Settle time.Duration
}

// Watcher watches a set of files. Run drives it; Changes reports.
type Watcher struct {
	settle  time.Duration
	w       *fsnotify.Watcher
	changes chan struct{}

	// mu guards paths, dirs, seen (what each path was when last looked
	// at) and changed (the paths changed since Changed was last called).
	mu      sync.Mutex
	paths   []string
	dirs    []string
	seen    map[string]fileID
	changed []string
}

// fileID is what a file is, as far as a change is concerned.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
	missing  bool
}

func identify(path string) fileID {
	fi, err := os.Stat(path) // follows links
	if err != nil {
		return fileID{missing: true}
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id
}

// New starts watching the directories of paths. Close it with Run's end
// (or Close, when Run never runs).
func New(paths []string, opts Options) (*Watcher, error) {
	if opts.Settle <= 0 {
		opts.Settle = DefaultSettle
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("filewatch: %w", err)
	}
	w := &Watcher{settle: opts.Settle, w: fw, changes: make(chan struct{}, 1), seen: map[string]fileID{}}
	if err := w.Watch(paths); err != nil {
		_ = fw.Close()
		return nil, err
	}
	return w, nil
}

// Watch replaces the set of files watched. A file that stays keeps what
// it was last seen as; a new one is what it is now. On error the set is
// unchanged.
func (w *Watcher) Watch(paths []string) error {
	var abs, dirs []string
	for _, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("filewatch: %w", err)
		}
		abs = append(abs, a)
		if d := filepath.Dir(a); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var added []string
	for _, d := range dirs {
		if slices.Contains(w.dirs, d) {
			continue
		}
		if err := w.w.Add(d); err != nil {
			for _, a := range added {
				_ = w.w.Remove(a)
			}
			return fmt.Errorf("filewatch: watch %s: %w", d, err)
		}
		added = append(added, d)
	}
	for _, d := range w.dirs {
		if !slices.Contains(dirs, d) {
			_ = w.w.Remove(d)
		}
	}
	seen := map[string]fileID{}
	for _, a := range abs {
		if id, ok := w.seen[a]; ok {
			seen[a] = id
		} else {
			seen[a] = identify(a)
		}
	}
	w.paths, w.dirs, w.seen = abs, dirs, seen
	return nil
}

// Changed returns the files (absolute paths) that changed since it was
// last called, and forgets them.
func (w *Watcher) Changed() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.changed
	w.changed = nil
	return out
}

// Changes receives a value once the watched files have changed and
// settled; changes that come before it is read are reported once.
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Close stops watching; Run does it when it returns.
func (w *Watcher) Close() error { return w.w.Close() }

// Run watches until ctx ends, then closes the watcher. It returns an
// error only if the watch itself fails.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.w.Close()
	settle := time.NewTimer(w.settle)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.w.Events:
			if !ok {
				return nil
			}
			settle.Reset(w.settle)
		case err, ok := <-w.w.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				settle.Reset(w.settle) // events were lost: look anyway
				continue
			}
			return fmt.Errorf("filewatch: %w", err)
		case <-settle.C:
			if w.look() {
				select {
				case w.changes <- struct{}{}:
				default:
				}
			}
		}
	}
}

// look reports whether any watched file is not what it was, and notes
// which for Changed.
func (w *Watcher) look() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := false
	for _, p := range w.paths {
		if id := identify(p); id != w.seen[p] {
			w.seen[p] = id
			changed = true
			if !slices.Contains(w.changed, p) {
				w.changed = append(w.changed, p)
			}
		}
	}
	return changed
}
