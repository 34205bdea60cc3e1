package main

import (
	"bytes"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/admin"
)

// drainable is a node the admin API can drain.
type drainable struct {
	mu       sync.Mutex
	draining bool
}

func (d *drainable) Status() any { return map[string]bool{"draining": d.isDraining()} }
func (d *drainable) Ready() bool { return true }
func (d *drainable) Drain() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.draining = true
	return nil
}
func (d *drainable) Undrain() error { return nil }
func (d *drainable) isDraining() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.draining
}

// TestCtlRemote walks the README's remote access steps: `certs issue
// --operator` for a reader and an admin, then `ctl` with their
// certificates against a node's remote admin address.
func TestCtlRemote(t *testing.T) {
	dir := t.TempDir()
	cli := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	for _, args := range [][]string{
		{"certs", "init", "--dir", dir},
		{"certs", "issue", "--dir", dir, "--node", "pop1"},
		{"certs", "issue", "--dir", dir, "--operator", "alice"},
		{"certs", "issue", "--dir", dir, "--operator", "bob", "--role", "admin"},
	} {
		code, out := cli(args...)
		require.Equal(t, exitOK, code, out)
	}
	code, out := cli("certs", "issue", "--dir", dir, "--operator", "carol", "--role", "root")
	require.Equal(t, exitConfig, code)
	require.Contains(t, out, `role "root": want read or admin`)
	code, out = cli("certs", "issue", "--dir", dir, "--operator", "carol", "--node", "pop1")
	require.Equal(t, exitConfig, code)
	require.Contains(t, out, "exactly one of --node and --operator")

	store, err := pki.OpenStore(dir, "pop1", nil)
	require.NoError(t, err)
	node := &drainable{}
	s, err := admin.Listen(admin.Options{Addr: "127.0.0.1:0", Remote: "127.0.0.1:0", Store: store, Node: node})
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- s.Serve(t.Context()) }()
	t.Cleanup(func() { require.NoError(t, <-served) })

	as := func(who string, args ...string) []string {
		return append(args, "--admin", s.RemoteAddr(), "--node", "pop1", "--ca", filepath.Join(dir, pki.CACertFile),
			"--cert", pki.OperatorCertFile(dir, who), "--key", pki.OperatorKeyFile(dir, who))
	}
	code, out = cli(as("alice", "ctl", "status")...)
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, `"draining": false`)
	code, out = cli(as("alice", "ctl", "drain")...)
	require.Equal(t, exitFail, code)
	require.Contains(t, out, "403 Forbidden: read_only: this call needs an operator certificate with the admin role")
	require.False(t, node.isDraining())
	code, out = cli(as("bob", "ctl", "drain")...)
	require.Equal(t, exitOK, code, out)
	require.True(t, node.isDraining())

	code, out = cli("ctl", "status", "--admin", s.RemoteAddr(), "--cert", pki.OperatorCertFile(dir, "bob"))
	require.Equal(t, exitConfig, code)
	require.Contains(t, out, "--cert, --key and --ca go together")
	code, out = cli("ctl", "status", "--admin", s.Addr())
	require.Equal(t, exitOK, code, "loopback needs no certificate: %s", out)
}
