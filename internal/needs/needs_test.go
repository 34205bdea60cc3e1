package needs

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("NEEDS_CHILD") != "" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

// TestChild is run by TestRequireTurnsSkipsIntoFailures.
func TestChild(t *testing.T) {
	if os.Getenv("NEEDS_CHILD") == "" {
		t.SkipNow()
	}
	Tools(t, "none", "no-such-tool-anyedge")
}

func TestRequireTurnsSkipsIntoFailures(t *testing.T) {
	run := func(env ...string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.v")
		cmd.Env = append(os.Environ(), append(env, "NEEDS_CHILD=1")...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(Env + "=")
	require.NoError(t, err, out)
	require.Contains(t, out, "--- SKIP: TestChild")
	require.Contains(t, out, "needs no-such-tool-anyedge (Debian package none)")

	out, err = run(Env + "=1")
	require.Error(t, err, out)
	require.Contains(t, out, "--- FAIL: TestChild")
	require.Contains(t, out, Env+" is set")
}
