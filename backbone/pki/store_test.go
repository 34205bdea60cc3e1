package pki

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStoreKeepsOldMaterialOnBadFile(t *testing.T) {
	f := newFixture(t)
	good := f.pop.Leaf().SerialNumber
	certPath := NodeCertFile(f.dir, "pop1")
	certPEM := readFile(t, certPath)

	other := t.TempDir()
	require.NoError(t, InitCA(other, time.Hour, time.Now()))
	require.NoError(t, Issue(other, "pop1", time.Hour, time.Now()))
	require.NoError(t, Issue(f.dir, "pop2", time.Hour, time.Now()))

	for _, tc := range []struct {
		name string
		path string
		data []byte
		want string
	}{
		{"garbage cert", certPath, []byte("not a certificate"), certPath},
		{"cert of other key", certPath, readFile(t, NodeCertFile(f.dir, "pop2")), "private key does not match"},
		{"garbage CA", filepath.Join(f.dir, CACertFile), []byte("junk"), CACertFile},
		{"node CA", filepath.Join(f.dir, CACertFile), certPEM, "not a CA certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := readFile(t, tc.path)
			t.Cleanup(func() { writeFile(t, tc.path, orig) })
			writeFile(t, tc.path, tc.data)
			require.ErrorContains(t, f.pop.Reload(), tc.want)
			require.Equal(t, good, f.pop.Leaf().SerialNumber, "old material kept")
		})
	}
	t.Run("pair from other CA", func(t *testing.T) {
		keyPath := NodeKeyFile(f.dir, "pop1")
		origCert, origKey := readFile(t, certPath), readFile(t, keyPath)
		t.Cleanup(func() {
			require.NoError(t, writeReplace(keyPath, origKey, 0o600))
			writeFile(t, certPath, origCert)
		})
		require.NoError(t, writeReplace(keyPath, readFile(t, NodeKeyFile(other, "pop1")), 0o600))
		writeFile(t, certPath, readFile(t, NodeCertFile(other, "pop1")))
		require.ErrorContains(t, f.pop.Reload(), "unknown authority")
		require.Equal(t, good, f.pop.Leaf().SerialNumber)
	})
	t.Run("missing key", func(t *testing.T) {
		keyPath := NodeKeyFile(f.dir, "pop1")
		orig := readFile(t, keyPath)
		require.NoError(t, os.Remove(keyPath))
		t.Cleanup(func() { require.NoError(t, writeReplace(keyPath, orig, 0o600)) })
		require.ErrorContains(t, f.pop.Reload(), keyPath)
		require.Equal(t, good, f.pop.Leaf().SerialNumber)
	})
	t.Run("wrong node", func(t *testing.T) {
		require.NoError(t, os.Rename(NodeCertFile(f.dir, "pop2"), filepath.Join(f.dir, "pop3.crt")))
		require.NoError(t, os.Rename(NodeKeyFile(f.dir, "pop2"), filepath.Join(f.dir, "pop3.key")))
		_, err := OpenStore(f.dir, "pop3", nil)
		require.ErrorContains(t, err, `certificate is for node "pop2", not "pop3"`)
	})
	require.NoError(t, f.pop.Reload())
	require.Equal(t, good, f.pop.Leaf().SerialNumber)
}

func TestStoreRunPollsFiles(t *testing.T) {
	f := newFixture(t)
	f.pop.interval = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.pop.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	old := f.pop.Leaf().SerialNumber
	require.NoError(t, Issue(f.dir, "pop1", DefaultNodeValidity, time.Now()))
	require.Eventually(t, func() bool {
		return f.pop.Leaf().SerialNumber.Cmp(old) != 0
	}, 5*time.Second, 5*time.Millisecond, "Run did not pick up the new certificate")
	pair := readFile(t, NodeCertFile(f.dir, "pop1"))
	require.Equal(t, encodeCertPEM(f.pop.Certificate().Certificate[0]), pair)
}

func TestStoreRunInMemory(t *testing.T) {
	e, err := NewEphemeral("pop1")
	require.NoError(t, err)
	s, err := e.Store("pop1", nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	require.NoError(t, <-done)
}

func TestOpenStoreErrors(t *testing.T) {
	_, err := OpenStore(t.TempDir(), "pop1", nil)
	require.ErrorContains(t, err, CACertFile)
	_, err = OpenStore(t.TempDir(), "../etc", nil)
	require.ErrorContains(t, err, "node name")
}

func TestStorePollLogsBadFileOnce(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	s, err := OpenStore(f.dir, "pop1", slog.New(slog.NewTextHandler(&buf, nil)))
	require.NoError(t, err)
	good := s.Leaf().SerialNumber
	s.poll()
	require.NotContains(t, buf.String(), "reload failed", "unchanged files are not reloaded")

	writeFile(t, NodeCertFile(f.dir, "pop1"), []byte("junk"))
	s.poll()
	require.Contains(t, buf.String(), "pki reload failed, keeping previous certificates")
	require.Contains(t, buf.String(), "component=pki")
	require.Equal(t, good, s.Leaf().SerialNumber)
	buf.Reset()
	s.poll()
	require.Empty(t, buf.String(), "a bad file is logged once")

	require.NoError(t, Issue(f.dir, "pop1", time.Hour, time.Now()))
	s.poll()
	require.Contains(t, buf.String(), "pki material loaded")
	require.NotEqual(t, good, s.Leaf().SerialNumber)
}
