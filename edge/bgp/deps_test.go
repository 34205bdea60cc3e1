package bgp

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDependencies keeps the speaker independent of the config tree.
func TestDependencies(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, string(out))
	for _, dep := range strings.Fields(string(out)) {
		require.False(t, strings.HasPrefix(dep, "github.com/anyedge/anyedge/control"), "edge/bgp imports %s", dep)
		require.False(t, strings.HasPrefix(dep, "github.com/anyedge/anyedge/cmd"), "edge/bgp imports %s", dep)
	}
}
