package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
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
	traffic  []string
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

// Traffic and PortMap record what ctl sent, as a region would take it.
func (d *drainable) Traffic(req admin.TrafficRequest, allow bool) (any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.traffic = append(d.traffic, fmt.Sprintf("%v %+v", allow, req))
	return map[string]string{"ok": "yes"}, nil
}

// Override records what ctl sent, as a node would take it.
func (d *drainable) Override(req admin.OverrideRequest) (any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := -1
	if req.Value != nil {
		v = *req.Value
	}
	d.traffic = append(d.traffic, fmt.Sprintf("override %s %s %d", req.Kind, req.Name, v))
	return map[string]string{"ok": "yes"}, nil
}

func (d *drainable) PortMap(q admin.PortMapQuery) (any, error) {
	return map[string]any{"query": q}, nil
}

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

	// Custom routing: allow and deny are admin calls; port-map a read.
	code, out = cli(as("alice", "ctl", "allow", "--subnet", "eu-a", "--address", "198.18.64.7", "--port", "7777")...)
	require.Equal(t, exitFail, code)
	require.Contains(t, out, "403 Forbidden: read_only")
	code, out = cli(as("bob", "ctl", "allow", "--subnet", "eu-a", "--address", "198.18.64.7", "--address", "198.18.64.8", "--port", "7777")...)
	require.Equal(t, exitOK, code, out)
	code, out = cli(as("bob", "ctl", "deny", "--subnet", "eu-a", "--all")...)
	require.Equal(t, exitOK, code, out)
	node.mu.Lock()
	require.Equal(t, []string{"true {Subnet:eu-a All:false Addresses:[198.18.64.7 198.18.64.8] Ports:[7777]}",
		"false {Subnet:eu-a All:true Addresses:[] Ports:[]}"}, node.traffic)
	node.mu.Unlock()
	code, out = cli(as("alice", "ctl", "port-map", "--destination", "198.18.64.7:7777", "--accelerator", "game")...)
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, `"Destination": "198.18.64.7:7777"`)
	require.Contains(t, out, `"Accelerator": "game"`)
	// Overrides: admin calls, arguments before or after the flags.
	code, out = cli(as("alice", "ctl", "weight", "e1", "0")...)
	require.Equal(t, exitFail, code)
	require.Contains(t, out, "403 Forbidden: read_only")
	code, out = cli(as("bob", "ctl", "weight", "e1", "0")...)
	require.Equal(t, exitOK, code, out)
	code, out = cli("ctl", "dial", "--admin", s.Addr(), "r1", "25")
	require.Equal(t, exitOK, code, out)
	code, out = cli("ctl", "reset", "--admin", s.Addr())
	require.Equal(t, exitOK, code, out)
	node.mu.Lock()
	require.Equal(t, []string{"override weight e1 0", "override dial r1 25", "override reset  -1"}, node.traffic[2:])
	node.mu.Unlock()
	for args, want := range map[string]string{
		"weight e1":     "want ENDPOINT N",
		"dial r1 half":  `want REGION PERCENT: "half" is not a number`,
		"reset now":     `unexpected arguments ["now"]`,
		"status please": `unexpected arguments ["please"]`,
	} {
		code, out = cli(append([]string{"ctl"}, append(strings.Fields(args), "--admin", s.Addr())...)...)
		require.Equal(t, exitConfig, code, args)
		require.Contains(t, out, want, args)
	}

	code, out = cli("ctl", "allow", "--admin", s.Addr())
	require.Equal(t, exitConfig, code)
	require.Contains(t, out, "--subnet is required")

	code, out = cli("ctl", "status", "--admin", s.RemoteAddr(), "--cert", pki.OperatorCertFile(dir, "bob"))
	require.Equal(t, exitConfig, code)
	require.Contains(t, out, "--cert, --key and --ca go together")
	code, out = cli("ctl", "status", "--admin", s.Addr())
	require.Equal(t, exitOK, code, "loopback needs no certificate: %s", out)
}
