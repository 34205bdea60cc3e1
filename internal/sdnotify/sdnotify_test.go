package sdnotify

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

// listen is the service manager's side: a unixgram socket.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 256)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := c.Read(buf)
	require.NoError(t, err)
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), "@anyedge-sdnotify-test-" + t.Name()} {
		mgr := listen(t, name)
		n, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "800000"}), 42)
		require.NoError(t, err)
		require.Equal(t, 800*time.Millisecond, n.Watchdog())
		require.NoError(t, n.Ready())
		require.Equal(t, "READY=1", recv(t, mgr))
		require.NoError(t, n.Alive())
		require.Equal(t, "WATCHDOG=1", recv(t, mgr))
		require.NoError(t, n.Stopping())
		require.Equal(t, "STOPPING=1", recv(t, mgr))
		require.NoError(t, n.Close())
		require.NoError(t, n.Close(), "Close is idempotent")
	}
}

func TestFromEnv(t *testing.T) {
	n, err := FromEnv(env(nil), 1)
	require.NoError(t, err)
	require.Nil(t, n, "no NOTIFY_SOCKET: no notifier")
	require.NoError(t, n.Ready(), "a nil notifier sends nothing")
	require.Zero(t, n.Watchdog())
	require.NoError(t, n.Close())

	n, err = FromEnv(env(map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "500000", "WATCHDOG_PID": "7"}), 8)
	require.NoError(t, err)
	require.Zero(t, n.Watchdog(), "the watchdog is another process's")

	_, err = FromEnv(env(map[string]string{"NOTIFY_SOCKET": "relative"}), 1)
	require.ErrorContains(t, err, "NOTIFY_SOCKET")
	_, err = FromEnv(env(map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "soon"}), 1)
	require.ErrorContains(t, err, "WATCHDOG_USEC")
}

func TestSendWithoutManagerFails(t *testing.T) {
	n, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "nobody")}), 1)
	require.NoError(t, err)
	require.ErrorContains(t, n.Ready(), "sd_notify")
}
