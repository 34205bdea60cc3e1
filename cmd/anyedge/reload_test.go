package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/internal/testport"
)

// configStatus is the part of /status this test reads.
type configStatus struct {
	Config struct {
		Revision   string            `json:"revision"`
		Source     string            `json:"source"`
		Reloads    map[string]uint64 `json:"reloads"`
		LastReload *struct {
			Trigger string `json:"trigger"`
			Result  string `json:"result"`
			Error   string `json:"error"`
		} `json:"last_reload"`
	} `json:"config"`
}

func readStatus(admin string) (configStatus, error) { return getStatus[configStatus](admin) }

// getStatus reads a node's /status into a T.
func getStatus[T any](admin string) (T, error) {
	var st T
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// TestReloadBinary runs a region and an edge as `anyedge` processes and
// changes their document the ways an operator does: an editor's
// rename-over (applied), a broken file written in place (invalid, the
// old document stays), the file fixed, and SIGHUP (read and applied
// although unchanged). Each step shows in /status.
func TestReloadBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/anyedge")
	}
	f := newBinFleet(t)
	bin, doc := f.bin, f.doc
	cfg := filepath.Join(t.TempDir(), "fleet.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(doc(128)), 0o644))
	procs := f.start(t, cfg)
	wait := func(what string, cond func(configStatus) bool) configStatus {
		t.Helper()
		return waitFor(t, what, func() (configStatus, error) { return readStatus(f.popAdmin) }, cond)
	}
	revision := func(text string) string {
		out, err := exec.Command(bin, "validate", writeTemp(t, text)).CombinedOutput()
		require.NoError(t, err, "%s", out)
		_, rev, _ := strings.Cut(strings.TrimSpace(string(out)), "revision ")
		return strings.TrimSuffix(rev, ")")
	}
	st := wait("edge up", func(st configStatus) bool { return st.Config.Revision != "" })
	require.Equal(t, revision(doc(128)), st.Config.Revision)
	require.Equal(t, "file "+cfg, st.Config.Source)

	// An editor saves: a new file renamed over the old one.
	tmp := cfg + ".swp"
	require.NoError(t, os.WriteFile(tmp, []byte(doc(7)), 0o644))
	require.NoError(t, os.Rename(tmp, cfg))
	rev7 := revision(doc(7))
	st = wait("rename-over applied", func(st configStatus) bool { return st.Config.Revision == rev7 })
	require.Equal(t, "file changed", st.Config.LastReload.Trigger)

	// A broken file written in place: the document in force stays.
	require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(doc(7), "weight: 7", "weight: 700", 1)), 0o644))
	st = wait("invalid reload shown", func(st configStatus) bool { return st.Config.Reloads["invalid"] == 1 })
	require.Equal(t, rev7, st.Config.Revision)
	require.Contains(t, st.Config.LastReload.Error, "weight: 700 is outside 0–255")

	// Fixed: the same document as in force, said so.
	require.NoError(t, os.WriteFile(cfg, []byte(doc(7)), 0o644))
	wait("fixed", func(st configStatus) bool { return st.Config.LastReload.Result == "unchanged" })

	// SIGHUP reads and applies although nothing changed.
	applied := st.Config.Reloads["applied"]
	require.NoError(t, procs[1].Process.Signal(syscall.SIGHUP))
	st = wait("sighup applied", func(st configStatus) bool { return st.Config.Reloads["applied"] == applied+1 })
	require.Equal(t, "sighup", st.Config.LastReload.Trigger)

	for _, cmd := range []*exec.Cmd{procs[1], procs[0]} {
		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		require.NoError(t, cmd.Wait())
	}
}

// binFleet is a region r1 and an edge pop run as `anyedge` processes:
// their binary, certificates, ports, endpoint and document.
type binFleet struct {
	bin, pkiDir, popAdmin     string
	port, r1Admin, r1Backbone int
	endpoint                  string // host:port; answers "ok" to every connection
}

// newBinFleet builds anyedge, issues the nodes' certificates and starts
// the endpoint.
func newBinFleet(t *testing.T) *binFleet {
	t.Helper()
	f := &binFleet{bin: buildBinary(t), pkiDir: filepath.Join(t.TempDir(), "pki"),
		popAdmin: fmt.Sprintf("127.0.0.1:%d", testport.Port(t)),
		port:     testport.Port(t), r1Admin: testport.Port(t), r1Backbone: testport.Port(t)}
	for _, args := range [][]string{
		{"certs", "init", "--dir", f.pkiDir},
		{"certs", "issue", "--dir", f.pkiDir, "--node", "pop"},
		{"certs", "issue", "--dir", f.pkiDir, "--node", "r1"},
	} {
		out, err := exec.Command(f.bin, args...).CombinedOutput()
		require.NoError(t, err, "anyedge %s: %s", strings.Join(args, " "), out)
	}
	ep, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ep.Close() })
	go func() {
		for {
			c, err := ep.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "ok\n")
			_ = c.Close()
		}
	}()
	f.endpoint = ep.Addr().String()
	return f
}

// doc is the fleet's document, e1 with weight.
func (f *binFleet) doc(weight int) string {
	return fmt.Sprintf(`accelerators:
  - name: web
    ip_addresses: [127.0.0.1]
    listeners:
      - protocol: tcp
        port_ranges: [{from: %d}]
        endpoint_groups:
          - region: r1
            endpoints: [{id: e1, address: %q, weight: %d}]
topology:
  pki_dir: %s
  pops: [{name: pop, admin: %q}]
  regions: [{name: r1, admin: "127.0.0.1:%d", backbone: {listen: "127.0.0.1:%d"}}]
`, f.port, f.endpoint, weight, f.pkiDir, f.popAdmin, f.r1Admin, f.r1Backbone)
}

// start runs r1 and pop with --config cfg; they are stopped (SIGINT)
// when the test ends, if it did not stop them.
func (f *binFleet) start(t *testing.T, cfg string) []*exec.Cmd {
	t.Helper()
	var procs []*exec.Cmd
	for _, n := range []struct{ role, name string }{{"region", "r1"}, {"edge", "pop"}} {
		cmd := exec.Command(f.bin, n.role, "--config", cfg, "--node", n.name, "--log-level", "warn")
		var stderr lockedBuffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		procs = append(procs, cmd)
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
			if t.Failed() {
				t.Logf("%s stderr:\n%s", n.name, stderr.String())
			}
		})
	}
	return procs
}

// waitFor reads until cond holds, for at most 20 s.
func waitFor[T any](t *testing.T, what string, read func() (T, error), cond func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := read()
		if err == nil && cond(st) {
			return st
		}
		require.True(t, time.Now().Before(deadline), "%s: not within 20 s (last: %+v, %v)", what, st, err)
		time.Sleep(50 * time.Millisecond)
	}
}

// writeTemp writes text to a temporary file and returns its path.
func writeTemp(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "doc.yaml")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}
