package filewatch_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/internal/filewatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// watch runs a watcher of paths until the test ends.
func watch(t *testing.T, paths ...string) *filewatch.Watcher {
	t.Helper()
	w, err := filewatch.New(paths, filewatch.Options{Settle: 10 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, w.Run(ctx)) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return w
}

// changed waits up to 10 s for a change.
func changed(t *testing.T, w *filewatch.Watcher, what string) {
	t.Helper()
	select {
	case <-w.Changes():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no change reported", what)
	}
}

// quiet checks that no change is pending once fence, a change of another
// watched file made after the operation under test, has been reported:
// the watcher handles events in order.
func quiet(t *testing.T, w *filewatch.Watcher, fence string, what string) {
	t.Helper()
	require.NoError(t, os.WriteFile(fence, []byte(time.Now().String()), 0o644))
	changed(t, w, "fence")
	select {
	case <-w.Changes():
		t.Fatalf("%s: a change was reported", what)
	default:
	}
}

func TestChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fleet.yaml")
	fence := filepath.Join(t.TempDir(), "fence")
	require.NoError(t, os.WriteFile(path, []byte("a: 1\n"), 0o644))
	require.NoError(t, os.WriteFile(fence, nil, 0o644))
	w := watch(t, path, fence)

	require.NoError(t, os.WriteFile(path, []byte("a: 2\n"), 0o644))
	changed(t, w, "write in place")

	tmp := filepath.Join(dir, ".fleet.yaml.swp")
	require.NoError(t, os.WriteFile(tmp, []byte("a: 3\n"), 0o644))
	require.NoError(t, os.Rename(tmp, path))
	changed(t, w, "rename over the file")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o644))
	quiet(t, w, fence, "another file of the directory")

	require.NoError(t, os.Remove(path))
	changed(t, w, "removed")
	require.NoError(t, os.WriteFile(path, []byte("a: 4\n"), 0o644))
	changed(t, w, "created again")
}

// TestSymlinkSwap: a file reached through a link that is swapped, as a
// Kubernetes ConfigMap volume does (..data → ..2026_01_01, renamed over).
func TestSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, v), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, v, "fleet.yaml"), []byte(v), 0o644))
	}
	require.NoError(t, os.Symlink("v1", filepath.Join(dir, "..data")))
	path := filepath.Join(dir, "fleet.yaml")
	require.NoError(t, os.Symlink("..data/fleet.yaml", path))
	w := watch(t, path)

	require.NoError(t, os.Symlink("v2", filepath.Join(dir, "..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	changed(t, w, "link swapped")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "v2", string(b))
}

func TestNewFailsOnMissingDirectory(t *testing.T) {
	_, err := filewatch.New([]string{filepath.Join(t.TempDir(), "nowhere", "fleet.yaml")}, filewatch.Options{})
	require.ErrorContains(t, err, "nowhere")
}

// TestWatchReplacesSet: Watch adds and drops files (and their
// directories), and Changed names what changed.
func TestWatchReplacesSet(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a")
	b := filepath.Join(t.TempDir(), "b")
	for _, p := range []string{a, b} {
		require.NoError(t, os.WriteFile(p, nil, 0o644))
	}
	w := watch(t, a)
	require.NoError(t, w.Watch([]string{a, b}))
	require.NoError(t, os.WriteFile(b, []byte("1"), 0o644))
	changed(t, w, "a file added to the set")
	require.Equal(t, []string{b}, w.Changed())
	require.Empty(t, w.Changed(), "Changed forgets")

	require.NoError(t, w.Watch([]string{b}))
	require.NoError(t, os.WriteFile(a, []byte("1"), 0o644))
	quiet(t, w, b, "a file dropped from the set")
	require.Equal(t, []string{b}, w.Changed(), "only the fence")
	require.ErrorContains(t, w.Watch([]string{filepath.Join(a, "x", "y")}), "watch")
}
