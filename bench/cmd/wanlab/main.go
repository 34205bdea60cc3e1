//go:build linux

// Command wanlab starts and stops the WAN lab of internal/wanlab by hand:
//
//	wanlab up   [flags]   build the lab and leave it running in the background
//	wanlab down [-name N] stop it and remove whatever of it is left (also after a crash)
//	wanlab run  [flags]   build the lab and keep it in the foreground until SIGINT/SIGTERM
//
// `make lab-up` and `make lab-down` call it. Then, for example:
//
//	ip netns exec aelab-lab-client ping 198.18.1.2     # the internet path
//	ip netns exec aelab-lab-client ping 198.18.2.2     # the PoP
//	ip netns exec aelab-lab-pop ping 198.18.3.2        # the backbone
//
// Needs root.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anyedge/anyedge/internal/wanem"
	"github.com/anyedge/anyedge/internal/wanlab"
)

const runDir = "/run/anyedge-wanlab"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: wanlab up|down|run [flags]")
		return 2
	}
	fs := flag.NewFlagSet("wanlab "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "lab", "lab name (namespaces aelab-NAME-client, -pop, -region, -endpoint)")
	inetRTT := fs.Duration("internet-rtt", 200*time.Millisecond, "round-trip delay of the internet path (client ↔ endpoint)")
	inetLoss := fs.Float64("internet-loss", 0, "random loss of the internet path, percent per direction")
	accRTT := fs.Duration("access-rtt", 5*time.Millisecond, "round-trip delay client ↔ PoP")
	bbRTT := fs.Duration("backbone-rtt", 200*time.Millisecond, "round-trip delay of the backbone (PoP ↔ region)")
	bbLoss := fs.Float64("backbone-loss", 0, "random loss of the backbone, percent per direction")
	rate := fs.Int64("rate-mbit", 200, "rate of every emulated link, Mbit/s (0: unlimited)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	shape := func(rtt time.Duration, lossPct float64) wanlab.Shape {
		return wanlab.Symmetric(wanem.Params{Delay: rtt / 2, Loss: lossPct / 100, RateBits: *rate * 1_000_000})
	}
	cfg := wanlab.Config{
		Name: *name, Realtime: true, TCPMaxBuffer: 32 << 20,
		Internet: shape(*inetRTT, *inetLoss), Access: shape(*accRTT, 0), Backbone: shape(*bbRTT, *bbLoss),
	}
	switch args[0] {
	case "run":
		return foreground(cfg, stdout, stderr)
	case "up":
		return up(cfg, args[1:], stdout, stderr)
	case "down":
		return down(*name, stdout, stderr)
	}
	fmt.Fprintf(stderr, "wanlab: unknown command %q\n", args[0])
	return 2
}

func foreground(cfg wanlab.Config, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lab, err := wanlab.Up(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "wanlab:", err)
		return 1
	}
	fmt.Fprintf(stdout, "ready: namespaces %s{%s}\n", wanlab.Prefix(cfg.Name), strings.Join(wanlab.Roles, ","))
	<-ctx.Done()
	// Whoever read "ready" may be gone: the rest goes to stderr (the log).
	for _, l := range []string{wanlab.Internet, wanlab.Access, wanlab.Backbone} {
		st := lab.Stats(l)
		fmt.Fprintf(stderr, "%s: in %d out %d lost %d queue-full %d late %d (worst %v)\n", l, st.In, st.Out, st.Lost, st.QueueFull, st.Late, st.MaxLate)
	}
	if err := lab.Close(); err != nil {
		fmt.Fprintln(stderr, "wanlab:", err)
		return 1
	}
	return 0
}

func pidFile(name string) string { return filepath.Join(runDir, name+".pid") }

// up starts `wanlab run` detached, waits for it to say ready, and records
// its PID for down.
func up(cfg wanlab.Config, args []string, stdout, stderr io.Writer) int {
	if err := wanlab.Available(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if code := down(cfg.Name, io.Discard, stderr); code != 0 {
		return code
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		fmt.Fprintln(stderr, "wanlab:", err)
		return 1
	}
	logPath := filepath.Join(runDir, cfg.Name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		fmt.Fprintln(stderr, "wanlab:", err)
		return 1
	}
	defer logf.Close()
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "wanlab:", err)
		return 1
	}
	cmd := exec.Command(exe, append([]string{"run"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(stderr, "wanlab:", err)
		return 1
	}
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "wanlab:", err)
		return 1
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b, _ := os.ReadFile(logPath)
		fmt.Fprintf(stderr, "wanlab: the lab did not come up: %v\n%s", err, b)
		_ = wanlab.Down(cfg.Name)
		return 1
	}
	// From here the runner's stdout goes nowhere; it keeps running.
	if err := os.WriteFile(pidFile(cfg.Name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		fmt.Fprintln(stderr, "wanlab:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wanlab %s up (pid %d, log %s): %s", cfg.Name, cmd.Process.Pid, logPath, line)
	_ = cmd.Process.Release()
	return 0
}

// down stops the runner recorded for name (by PID, after checking that the
// PID is still a wanlab) and removes every namespace of the lab.
func down(name string, stdout, stderr io.Writer) int {
	if b, err := os.ReadFile(pidFile(name)); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && isRunner(pid) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			for deadline := time.Now().Add(5 * time.Second); isRunner(pid) && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			if isRunner(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = os.Remove(pidFile(name))
	}
	if err := wanlab.Down(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(stderr, "wanlab:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wanlab %s down\n", name)
	return 0
}

func isRunner(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "wanlab") && strings.Contains(string(b), "run")
}
