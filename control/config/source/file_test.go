package source_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/config/source"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// doc is a valid document whose one endpoint has weight w.
func doc(w int) string {
	return `accelerators:
  - name: web
    ip_addresses: [203.0.113.10]
    listeners:
      - protocol: tcp
        port_ranges: [{from: 443}]
        endpoint_groups:
          - region: r1
            endpoints: [{id: e1, address: "198.18.0.10:443", weight: ` + itoa(w) + `}]
topology:
  pops: [{name: pop}]
  regions: [{name: r1, backbone: {listen: "198.18.0.1:4433"}}]
`
}

func itoa(n int) string {
	return string(rune('0'+n/100)) + string(rune('0'+n/10%10)) + string(rune('0'+n%10))
}

// next waits up to 10 s for an update.
func next(t *testing.T, out <-chan config.Update) config.Update {
	t.Helper()
	select {
	case u := <-out:
		return u
	case <-time.After(10 * time.Second):
		t.Fatal("no update")
		return config.Update{}
	}
}

// nextGood waits for the next update that loaded a document: a write in
// place (truncate, then write) can be read half done, which is an invalid
// document reported as such, and then read again whole.
func nextGood(t *testing.T, out <-chan config.Update) config.Update {
	t.Helper()
	for {
		if u := next(t, out); u.Err == nil {
			return u
		}
	}
}

// replace writes b to path by renaming a new file over it: one change.
func replace(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.yaml")
	require.NoError(t, os.WriteFile(path, []byte(doc(100)), 0o644))
	reread := make(chan struct{})
	f := &source.File{Path: path, Options: config.LoadOptions{Env: []string{}}, Reread: reread}
	l, err := f.Load()
	require.NoError(t, err)
	require.Equal(t, "file "+path, f.String())

	out := make(chan config.Update)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, f.Run(ctx, l, out)) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	// Renamed over, as an editor does.
	replace(t, path, []byte(doc(200)))
	u := next(t, out)
	require.NoError(t, u.Err)
	require.Equal(t, "file changed", u.Trigger)
	require.Equal(t, 200, *u.Loaded.Doc.Accelerators[0].Listeners[0].EndpointGroups[0].Endpoints[0].Weight)

	// Invalid: the error comes through.
	replace(t, path, []byte("accelerators: 1\n"))
	u = next(t, out)
	require.Error(t, u.Err)
	require.Contains(t, u.Err.Error(), "accelerators")

	// The same bytes again after an invalid one: a change.
	replace(t, path, []byte(doc(200)))
	u = next(t, out)
	require.NoError(t, u.Err)

	// SIGHUP reads even when nothing changed.
	reread <- struct{}{}
	u = next(t, out)
	require.Equal(t, "sighup", u.Trigger)
	require.Equal(t, config.RevisionOf([]byte(doc(200))), u.Loaded.Revision)

	// Touched with the same bytes: no update; the next real change, a
	// write in place, is the next document loaded.
	now := time.Now().Add(time.Second)
	require.NoError(t, os.Chtimes(path, now, now))
	require.NoError(t, os.WriteFile(path, []byte(doc(7)), 0o644))
	u = nextGood(t, out)
	require.Equal(t, 7, *u.Loaded.Doc.Accelerators[0].Listeners[0].EndpointGroups[0].Endpoints[0].Weight)
}

// TestFileUnwatchable: a file whose directory cannot be watched is still
// read on SIGHUP.
func TestFileUnwatchable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone", "fleet.yaml")
	reread := make(chan struct{})
	f := &source.File{Path: path, Reread: reread}
	out := make(chan config.Update)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, f.Run(ctx, config.Loaded{}, out)) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	require.ErrorContains(t, next(t, out).Err, "no such file", "the first look")
	reread <- struct{}{}
	u := next(t, out)
	require.ErrorContains(t, u.Err, "no such file")
	require.Equal(t, "sighup", u.Trigger)
}

// TestFileNamedFiles: a change of a file the document names (a deny list)
// reads the document again and forces its reload, though its bytes are
// the same.
func TestFileNamedFiles(t *testing.T) {
	dir := t.TempDir()
	path, deny := filepath.Join(dir, "fleet.yaml"), filepath.Join(t.TempDir(), "deny.txt")
	require.NoError(t, os.WriteFile(deny, []byte("198.51.100.0/24\n"), 0o644))
	text := strings.Replace(doc(100), "      - protocol: tcp\n", "      - protocol: tcp\n        deny_file: "+deny+"\n", 1)
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	f := &source.File{Path: path, Options: config.LoadOptions{Env: []string{}}}
	l, err := f.Load()
	require.NoError(t, err)
	require.Equal(t, []string{deny}, l.Doc.Files())
	out := make(chan config.Update)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, f.Run(ctx, l, out)) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	require.NoError(t, os.WriteFile(deny, []byte("198.51.100.0/24\n192.0.2.0/24\n"), 0o644))
	u := next(t, out)
	require.NoError(t, u.Err)
	require.True(t, u.Force)
	require.Equal(t, l.Revision, u.Loaded.Revision)
	require.Contains(t, u.Trigger, "file changed", "named by its path when the watch saw it, not when the first look did")

	require.NoError(t, os.WriteFile(deny, []byte("not a prefix\n"), 0o644))
	require.ErrorContains(t, next(t, out).Err, "deny.txt")
}
