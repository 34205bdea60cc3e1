package testetcd

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestKillRestart: a killed member refuses connections; restarted, it
// listens on the same address again.
func TestKillRestart(t *testing.T) {
	s := Start(t)
	c, err := net.Dial("tcp", s.Endpoint())
	require.NoError(t, err)
	require.NoError(t, c.Close())
	s.Kill()
	s.Kill() // idempotent
	_, err = net.DialTimeout("tcp", s.Endpoint(), time.Second)
	require.Error(t, err)
	s.Restart()
	c, err = net.Dial("tcp", s.Endpoint())
	require.NoError(t, err)
	require.NoError(t, c.Close())
}
