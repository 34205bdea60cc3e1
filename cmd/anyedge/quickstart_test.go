package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/internal/needs"
)

// buildBinary builds cmd/anyedge once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "anyedge")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// TestQuickstart runs README's first command the way a new user would:
// `anyedge dev` as a subprocess, curl through it, then Ctrl-C (SIGINT),
// expecting exit status 0 within 2 s.
func TestQuickstart(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		needs.Skip(t, "curl not installed (.ci/run installs it)")
	}
	bin := buildBinary(t)
	cmd := exec.Command(bin, "dev")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})

	// Wait for the "try:" hint, which is printed once everything serves.
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var hints []string
	var board string
	timeout := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "anyedge dev exited early: %s", stderr.String())
			if h, ok := strings.CutPrefix(l, "try:  "); ok {
				hints = append(hints, h)
			}
			if u, ok := strings.CutPrefix(l, "  dashboard on "); ok {
				board = u
			}
			done = strings.HasPrefix(l, "Ctrl-C")
		case <-timeout:
			t.Fatalf("no hint from anyedge dev: %s", stderr.String())
		}
	}
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	for _, h := range hints {
		require.Contains(t, string(readme), "try:  "+h, "README and the printed hints must agree")
	}
	require.Contains(t, hints, "curl http://127.0.0.1:8080/")
	const digHint = "dig +short @127.0.0.1 -p 8053 TXT hello.anyedge"
	require.Contains(t, hints, digHint)
	if _, err := exec.LookPath("dig"); err == nil {
		out, err := exec.Command("sh", "-c", digHint).CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "through anyedge", "the README's UDP line works")
		const nameHint = "dig +short @127.0.0.1 -p 8054 demo.accel.anyedge.test"
		require.Contains(t, hints, nameHint)
		out, err = exec.Command("sh", "-c", nameHint).CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Equal(t, "127.0.0.1", strings.TrimSpace(string(out)), "the accelerator's name resolves to its address")
	}

	seen := map[string]bool{}
	for range 20 {
		out, err := exec.Command("curl", "-sS", "--max-time", "5", "http://127.0.0.1:8080/").CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "through anyedge")
		for _, id := range []string{"web-1", "web-2"} {
			if strings.Contains(string(out), "hello from "+id) {
				seen[id] = true
			}
		}
	}
	require.Len(t, seen, 2, "both demo endpoints should answer across 20 connections")

	// The fleet's dashboard, as README shows it.
	require.Equal(t, "http://127.0.0.1:9190/", board)
	require.Contains(t, string(readme), "  dashboard on "+board)
	for _, path := range []string{"", "api/state"} {
		out, err := exec.Command("curl", "-sS", "--max-time", "5", board+path).CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), map[string]string{"": "<title>anyedge dashboard</title>", "api/state": `"name":"pop-local"`}[path])
	}

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		require.NoError(t, err, "exit status after SIGINT: %s", stderr.String())
		require.NotRegexp(t, `level=(WARN|ERROR)`, stderr.String(), "a normal run and stop logs nothing above info")
	case <-time.After(2 * time.Second):
		t.Fatalf("anyedge dev did not stop within 2 s of SIGINT")
	}
}

// TestREADMEValidateExample runs the validate example of README.md and
// expects exactly the output README shows.
func TestREADMEValidateExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	const cmd = "$ anyedge validate configs/testdata/broken.yaml\n"
	_, block, ok := strings.Cut(string(readme), cmd)
	require.True(t, ok, "README.md lost its validate example")
	block, _, _ = strings.Cut(block, "```")
	var out, errb bytes.Buffer
	t.Chdir("../..") // run as README shows it, from the repository's root
	require.Equal(t, exitConfig, run([]string{"validate", "configs/testdata/broken.yaml"}, &out, &errb))
	require.Equal(t, block, errb.String())
}

// TestValidateExitCodes: validate exits 0 on the shipped examples and 2 on
// a broken file, printing the path of each problem.
func TestValidateExitCodes(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, exitOK, run([]string{"validate", "../../configs/example-global.yaml"}, &out, &errb), errb.String())
	require.Equal(t, exitOK, run([]string{"validate", "../../configs/quickstart.yaml"}, &out, &errb), errb.String())

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(`
accelerators:
  - name: a
    ip_addresses: [203.0.113.1]
    listeners:
      - protocol: tcp
        port_ranges: [{from: 9000, to: 8000}]
        endpoint_groups:
          - region: nowhere
            endpoints: [{id: e1, address: "198.18.0.1:80", weight: 300}]
topology:
  regions: [{name: r1, backbone: {listen: "127.0.0.1:7000"}}]
  pops: [{name: p1}]
`), 0o644))
	errb.Reset()
	require.Equal(t, exitConfig, run([]string{"validate", bad}, &out, &errb))
	msg := errb.String()
	require.Contains(t, msg, "accelerators[0].listeners[0].port_ranges[0]: from 9000 is above to 8000")
	require.Contains(t, msg, "accelerators[0].listeners[0].endpoint_groups[0].region")
	require.Contains(t, msg, "accelerators[0].listeners[0].endpoint_groups[0].endpoints[0].weight")

	errb.Reset()
	require.Equal(t, exitConfig, run([]string{"validate", "--node", "nope", "../../configs/example-global.yaml"}, &out, &errb))
	require.Contains(t, errb.String(), `--node "nope" names no pop or region`)

	errb.Reset()
	require.Equal(t, exitConfig, run([]string{"edge", "--config", bad, "--node", "p1"}, &out, &errb))
	require.Contains(t, errb.String(), "from 9000 is above to 8000", "edge refuses to start with the same messages")
}

// lockedBuffer is a bytes.Buffer that a subprocess may write while the
// test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestValidateWarnings: a valid document whose accelerator has all its
// addresses in one network zone validates (exit 0) with a warning naming
// the path.
func TestValidateWarnings(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "zones.yaml")
	require.NoError(t, os.WriteFile(doc, []byte(`
accelerators:
  - name: web
    ip_addresses: [203.0.113.10, 203.0.113.138]
    prefixes: [203.0.113.0/25, 203.0.113.128/25]
    zones: [{name: a, ip_addresses: [203.0.113.10, 203.0.113.138]}]
    listeners:
      - protocol: tcp
        port_ranges: [{from: 80}]
        endpoint_groups: [{region: r1, endpoints: [{id: e1, address: "198.18.0.1:80"}]}]
topology:
  regions: [{name: r1, backbone: {listen: "127.0.0.1:7000"}}]
  pops: [{name: p1, zones: [a]}]
`), 0o644))
	var out, errb bytes.Buffer
	require.Equal(t, exitOK, run([]string{"validate", doc}, &out, &errb), errb.String())
	require.Contains(t, errb.String(), `warning: accelerators[0].zones: every address of the accelerator is in zone "a"`)
	require.Contains(t, out.String(), "ok (1 accelerators")
}
