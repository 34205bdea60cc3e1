// Package fleet runs anyedge nodes as processes of their own on
// 127.0.0.1 for the benchmarks under bench/cmd: certificates from
// `anyedge certs`, one log file per node, and their resident memory.
package fleet

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Fleet is one config document and its certificates in a directory.
type Fleet struct {
	Bin, Dir, Config string
}

// New writes doc (with {{PKI}} replaced by the certificates' directory)
// to dir and issues certificates for nodes.
func New(bin, dir, doc string, nodes ...string) (*Fleet, error) {
	f := &Fleet{Bin: bin, Dir: dir, Config: filepath.Join(dir, "fleet.yaml")}
	pki := filepath.Join(dir, "pki")
	if err := os.WriteFile(f.Config, []byte(strings.ReplaceAll(doc, "{{PKI}}", pki)), 0o644); err != nil {
		return nil, err
	}
	steps := [][]string{{"certs", "init", "--dir", pki}}
	for _, n := range nodes {
		steps = append(steps, []string{"certs", "issue", "--dir", pki, "--node", n})
	}
	for _, args := range steps {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("anyedge %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return f, nil
}

// Start runs `anyedge ROLE --node NODE`, logging to DIR/NODE.log
// (appended, so that a restarted node keeps one log).
func (f *Fleet) Start(role, node string) (*exec.Cmd, error) {
	cmd := exec.Command(f.Bin, role, "--config", f.Config, "--node", node, "--log-level", "warn")
	log, err := os.OpenFile(filepath.Join(f.Dir, node+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, err
	}
	return cmd, nil
}

// Stop sends sig to cmd's process (by PID) and waits for it.
func Stop(cmd *exec.Cmd, sig syscall.Signal) error {
	_ = cmd.Process.Signal(sig)
	return cmd.Wait()
}

// WaitReady polls url until it answers 200.
func WaitReady(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if r, err := http.Get(url); err == nil {
			_ = r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("not ready: " + url)
}

// RSS returns a process's resident memory in MiB (0 when unknown).
func RSS(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb float64
		if _, err := fmt.Sscanf(sc.Text(), "VmRSS: %f kB", &kb); err == nil {
			return kb / 1024
		}
	}
	return 0
}

// FreePorts returns k TCP ports free on 127.0.0.1 a moment ago.
func FreePorts(k int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range k {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
