// Package needs lets a test skip when the machine lacks what it needs —
// root for network namespaces, a Debian tool such as bird or dig — and
// turns those skips into failures where the machine promises them: with
// ANYEDGE_REQUIRE=1 in the environment (.ci/run sets it) a CI that lost
// root or a package fails loudly instead of passing on skipped tests.
package needs

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Env is the variable that turns skips into failures.
const Env = "ANYEDGE_REQUIRE"

// Skip skips the test, or fails it when Env is set.
func Skip(t testing.TB, args ...any) {
	t.Helper()
	if os.Getenv(Env) != "" {
		t.Fatalf("%s (%s is set: this machine must be able to run the test)", fmt.Sprint(args...), Env)
	}
	t.Skip(args...)
}

// Skipf is Skip with a format.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	Skip(t, fmt.Sprintf(format, args...))
}

// Root skips the test unless it runs as root.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skipf(t, "needs root for %s", why)
	}
}

// Tools skips the test unless every named program is on PATH; pkg names
// the Debian package that brings them (.ci/run installs it).
func Tools(t testing.TB, pkg string, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Skipf(t, "needs %s (Debian package %s): %v", n, pkg, err)
		}
	}
}
