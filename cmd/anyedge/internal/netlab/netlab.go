//go:build linux

package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/anyedge/anyedge/internal/needs"
)

// Lab is a set of namespaces that belong to one test.
type Lab struct {
	t      testing.TB
	prefix string

	// mu guards links.
	mu    sync.Mutex
	links int
}

// New returns an empty lab, or skips the test when it cannot run here (not
// root, no iproute2).
func New(t testing.TB) *Lab {
	t.Helper()
	if err := Available(); err != nil {
		needs.Skip(t, err)
	}
	return &Lab{t: t, prefix: fmt.Sprintf("ae-%d-", os.Getpid())}
}

// Available reports why a lab cannot be built here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netlab: needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("netlab: needs iproute2: %w", err)
	}
	return nil
}

// NS is one named network namespace of a lab.
type NS struct {
	// Name is the namespace's name under /var/run/netns.
	Name string
	lab  *Lab
}

// NS creates the namespace PREFIX+name with its loopback up. It is
// deleted in the test's cleanup.
func (l *Lab) NS(name string) *NS {
	l.t.Helper()
	n := &NS{Name: l.prefix + name, lab: l}
	_ = exec.Command("ip", "netns", "del", n.Name).Run() // a leftover of a crashed run with the same PID
	l.run("ip", "netns", "add", n.Name)
	l.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.Name).Run() })
	n.IP("link", "set", "lo", "up")
	return n
}

func (l *Lab) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Link joins a and b by a veth pair and gives each end the addresses in
// aAddrs and bAddrs (CIDR notation; IPv6 addresses skip duplicate address
// detection). It returns the device names in a and in b.
func (l *Lab) Link(a *NS, aAddrs []string, b *NS, bAddrs []string) (aDev, bDev string) {
	l.t.Helper()
	l.mu.Lock()
	l.links++
	n := l.links
	l.mu.Unlock()
	aDev, bDev = fmt.Sprintf("v%d%s", n, short(b.Name)), fmt.Sprintf("v%d%s", n, short(a.Name))
	l.run("ip", "link", "add", aDev, "netns", a.Name, "type", "veth", "peer", "name", bDev, "netns", b.Name)
	for _, end := range []struct {
		ns    *NS
		dev   string
		addrs []string
	}{{a, aDev, aAddrs}, {b, bDev, bAddrs}} {
		for _, ad := range end.addrs {
			args := []string{"addr", "add", ad, "dev", end.dev}
			if strings.Contains(ad, ":") {
				args = append([]string{"-6"}, append(args, "nodad")...)
			}
			end.ns.IP(args...)
		}
		end.ns.IP("link", "set", end.dev, "up")
	}
	return aDev, bDev
}

// short is the last part of a namespace name, cut to fit a device name.
func short(ns string) string {
	s := ns[strings.LastIndex(ns, "-")+1:]
	if len(s) > 10 {
		s = s[:10]
	}
	return s
}

// IP runs `ip ARGS` inside the namespace and fails the test on error.
func (n *NS) IP(args ...string) string {
	n.lab.t.Helper()
	return n.Run(append([]string{"ip"}, args...)...)
}

// Run runs a command inside the namespace, fails the test on error, and
// returns its combined output.
func (n *NS) Run(args ...string) string {
	n.lab.t.Helper()
	return n.lab.run(append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

// Output runs a command inside the namespace and returns its combined
// output; use it from subtests, where Run would fail the parent test.
func (n *NS) Output(args ...string) (string, error) {
	out, err := n.Command(args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), n.Name, err, out)
	}
	return string(out), nil
}

// Command returns a command that runs inside the namespace. `ip netns exec`
// replaces itself with the command, so the process ID is the command's.
func (n *NS) Command(args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// Sysctl sets key (e.g. "net.ipv4.ip_forward") inside the namespace.
func (n *NS) Sysctl(key, value string) {
	n.lab.t.Helper()
	n.Run("sysctl", "-qw", key+"="+value)
}

// Do runs f on an OS thread switched into the namespace: sockets that f
// opens stay in the namespace and can be used from any goroutine after.
func (n *NS) Do(f func() error) error {
	target, err := netns.GetFromName(n.Name)
	if err != nil {
		return fmt.Errorf("netlab: open namespace %s: %w", n.Name, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: enter %s: %w", n.Name, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked and ends with its goroutine rather than
		// serve another goroutine from the wrong namespace.
		return fmt.Errorf("netlab: leave %s: %w", n.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Proc is a process started inside a namespace.
type Proc struct {
	// Cmd is the started command.
	Cmd *exec.Cmd
	// LogPath is the file that holds its stdout and stderr.
	LogPath string

	done chan struct{}
	err  error // set before done is closed
}

// Start runs args inside the namespace with stdout and stderr appended to
// logPath. The process is killed (SIGKILL, by PID) in the test's cleanup
// if it still runs, and its log is printed when the test failed.
func (n *NS) Start(logPath string, args ...string) *Proc {
	n.lab.t.Helper()
	return n.StartEnv(logPath, nil, args...)
}

// StartEnv is Start with env added to the process's environment.
func (n *NS) StartEnv(logPath string, env []string, args ...string) *Proc {
	t := n.lab.t
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.Command(args...)
	cmd.Stdout, cmd.Stderr = f, f
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s in %s: %v", strings.Join(args, " "), n.Name, err)
	}
	p := &Proc{Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s (%s):\n%s", logPath, n.Name, b)
		}
	})
	return p
}

// Kill sends sig to the process unless it has exited.
func (p *Proc) Kill(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(p.Cmd.Process.Pid, sig)
	}
}

// Wait waits up to timeout for the process to exit; exited is false on
// timeout, err is its exit error (nil for status 0).
func (p *Proc) Wait(timeout time.Duration) (exited bool, err error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(timeout):
		return false, nil
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }
