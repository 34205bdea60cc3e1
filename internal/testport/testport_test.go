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
	require.GreaterOrEqual(t, base, 20000)
	require.Less(t, base+8, 60000)
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
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", Port(t, "tcp")))
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", Port(t, "udp")))
	require.NoError(t, err)
	require.NoError(t, pc.Close())
}
