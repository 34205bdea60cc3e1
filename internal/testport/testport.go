// Package testport finds ports for tests that cannot bind port 0 and read
// the port back: a document with fixed ports (listeners, backbone, admin),
// a custom routing listener's range of consecutive ports.
package testport

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
)

// Port returns a port that was free on 127.0.0.1 a moment ago, for
// network "tcp" or "udp".
func Port(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Range returns the first of n consecutive ports, between 20000 and 60000,
// that were free for TCP and UDP on every one of hosts a moment ago (none
// means 127.0.0.1). It fails the test when 50 tries find none.
func Range(t testing.TB, n int, hosts ...string) int {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	for range 50 {
		base := 20000 + rand.IntN(40000-n)
		if free(base, n, hosts) {
			return base
		}
	}
	t.Fatalf("no %d consecutive ports free on %v", n, hosts)
	return 0
}

// free binds every port of [base, base+n) on each host, TCP and UDP, and
// reports whether all of them could be bound; it releases them again.
func free(base, n int, hosts []string) bool {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		for _, h := range hosts {
			addr := net.JoinHostPort(h, fmt.Sprint(p))
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return false
			}
			closers = append(closers, ln)
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return false
			}
			closers = append(closers, pc)
		}
	}
	return true
}
