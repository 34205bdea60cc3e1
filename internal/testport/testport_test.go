package testport

import (
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRange: the ports Range returns can be bound, TCP and UDP, on each
// host asked for.
func TestRange(t *testing.T) {
	hosts := []string{"127.0.0.1", "127.0.0.2"}
	base := Range(t, 8, hosts...)
	elo, ehi := ephemeral()
	require.True(t, base+8 <= elo || base > ehi, "range %d+8 inside the ephemeral range %d-%d", base, elo, ehi)
	require.True(t, free(base, 8, hosts))
	for _, h := range hosts {
		ln, err := net.Listen("tcp", net.JoinHostPort(h, fmt.Sprint(base+7)))
		require.NoError(t, err)
		require.NoError(t, ln.Close())
	}
}

// TestFreeSeesABoundPort: a port already bound on one host makes the
// range not free.
func TestFreeSeesABoundPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	require.NoError(t, err)
	defer ln.Close()
	p := ln.Addr().(*net.TCPAddr).Port
	require.False(t, free(p, 1, []string{"127.0.0.1", "127.0.0.2"}))
}

// TestPort: the port Port returns can be bound.
func TestPort(t *testing.T) {
	p := Port(t)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
	require.NoError(t, err)
	require.NoError(t, pc.Close())
}

// TestSpan: test ports go to the wider side of the ephemeral range.
func TestSpan(t *testing.T) {
	lo, hi := span(32768, 60999)
	require.Equal(t, [2]int{10000, 32768}, [2]int{lo, hi})
	lo, hi = span(10000, 20000)
	require.Equal(t, [2]int{20001, 65536}, [2]int{lo, hi})
}
