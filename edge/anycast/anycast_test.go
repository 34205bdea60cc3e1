package anycast

import (
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/internal/needs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBindInNamespace adds addresses to lo inside a throwaway network
// namespace, leaves a pre-existing one alone, and removes only its own.
func TestBindInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		needs.Skip(t, "needs root for a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	require.NoError(t, err)
	defer orig.Close()
	ns, err := netns.New() // switches this thread into the new namespace
	require.NoError(t, err)
	defer func() {
		require.NoError(t, netns.Set(orig))
		ns.Close()
	}()
	require.NoError(t, exec.Command("ip", "link", "set", "lo", "up").Run())
	require.NoError(t, exec.Command("ip", "addr", "add", "203.0.113.9/32", "dev", "lo").Run())

	release, err := Bind("lo", []netip.Addr{
		netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("203.0.113.9"),
	})
	require.NoError(t, err)
	out := addrs(t)
	require.Contains(t, out, "203.0.113.10/32")
	require.Contains(t, out, "2001:db8::10/128")

	require.NoError(t, release())
	require.NoError(t, release(), "release is idempotent")
	out = addrs(t)
	require.NotContains(t, out, "203.0.113.10/32")
	require.NotContains(t, out, "2001:db8::10/128")
	require.Contains(t, out, "203.0.113.9/32", "an address that was there before stays")

	_, err = Bind("nonexistent0", []netip.Addr{netip.MustParseAddr("203.0.113.11")})
	require.ErrorContains(t, err, "interface nonexistent0")
}

func addrs(t *testing.T) string {
	out, err := exec.Command("ip", "addr", "show", "dev", "lo").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.TrimSpace(string(out))
}
