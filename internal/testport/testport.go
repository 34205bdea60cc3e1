// Package testport finds ports for tests that cannot bind port 0 and read
// the port back: a document with fixed ports (listeners, backbone, admin),
// a custom routing listener's range of consecutive ports.
package testport

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
)

// Port returns a port that was free for TCP and UDP on 127.0.0.1 a moment
// ago, outside the kernel's ephemeral range (see Range).
func Port(t testing.TB) int {
	t.Helper()
	return Range(t, 1)
}

// Range returns the first of n consecutive ports that were free for TCP and
// UDP on every one of hosts a moment ago (none means 127.0.0.1). It fails
// the test when 50 tries find none.
//
// The ports lie outside the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), so no outgoing connection of this or
// another test can take them between this check and the test's bind — the
// race a port read back from a bind to port 0 loses on a busy machine.
func Range(t testing.TB, n int, hosts ...string) int {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	lo, hi := span(ephemeral())
	if hi-lo < n {
		t.Fatalf("no room for %d ports outside the ephemeral range", n)
	}
	for range 50 {
		base := lo + rand.IntN(hi-lo-n+1)
		if free(base, n, hosts) && claim(base, n) {
			return base
		}
	}
	t.Fatalf("no %d consecutive ports free on %v", n, hosts)
	return 0
}

// handedOut holds every port this process's tests were given, so that two
// calls never return the same port while its first taker has not bound it.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// claim records [base, base+n) as handed out, unless a port of it was.
func claim(base, n int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for p := base; p < base+n; p++ {
		if handedOut.ports[p] {
			return false
		}
	}
	for p := base; p < base+n; p++ {
		handedOut.ports[p] = true
	}
	return true
}

// ephemeral returns the kernel's ephemeral port range, or Linux's default
// when it cannot be read.
func ephemeral() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil && lo > 0 && lo <= hi {
			return lo, hi
		}
	}
	return 32768, 60999
}

// span returns the wider of the two spans of test ports beside the
// ephemeral range [elo, ehi]: [10000, elo) or (ehi, 65535].
func span(elo, ehi int) (lo, hi int) {
	below, above := elo-10000, 65535-ehi
	if below >= above {
		return 10000, elo
	}
	return ehi + 1, 65536
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
