//go:build linux

package netlab

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLab links two namespaces, talks across the link over IPv4 and IPv6
// from sockets opened inside them, and runs a process in one of them.
func TestLab(t *testing.T) {
	l := New(t)
	a, b := l.NS("a"), l.NS("b")
	l.Link(a, []string{"198.18.0.1/30", "2001:db8:ff00::1/64"}, b, []string{"198.18.0.2/30", "2001:db8:ff00::2/64"})

	for _, addr := range []string{"198.18.0.2:0", "[2001:db8:ff00::2]:0"} {
		var ln net.Listener
		if err := b.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(c, c)
			c.Close()
		}()
		var c net.Conn
		if err := a.Do(func() (err error) { c, err = net.DialTimeout("tcp", ln.Addr().String(), 3*time.Second); return err }); err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "ping\n")
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		ln.Close()
		if err != nil || line != "ping\n" {
			t.Fatalf("echo over %s: %q, %v", addr, line, err)
		}
	}

	// The namespace is visible to processes, which are killed by PID.
	if out := a.IP("-4", "addr", "show"); !strings.Contains(out, "198.18.0.1/30") {
		t.Fatalf("address missing in %s: %s", a.Name, out)
	}
	p := a.Start(filepath.Join(t.TempDir(), "sleep.log"), "sleep", "60")
	p.Kill(syscall.SIGKILL)
	if exited, _ := p.Wait(5 * time.Second); !exited {
		t.Fatal("sleep did not die")
	}
}
