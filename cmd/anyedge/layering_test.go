package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLayering keeps the dependency rules of ARCHITECTURE.md from rotting:
// backbone and healthcheck import neither edge nor control; edge does not
// import control; nothing imports cmd; only edge/bgp imports gobgp.
func TestLayering(t *testing.T) {
	const mod = "github.com/anyedge/anyedge/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}:{{join .Deps " "}}`, mod+"...").CombinedOutput()
	require.NoError(t, err, "%s", out)
	rules := []struct{ from, forbidden string }{
		{mod + "backbone", mod + "edge"},
		{mod + "backbone", mod + "control"},
		{mod + "healthcheck", mod + "edge"},
		{mod + "healthcheck", mod + "control"},
		{mod + "healthcheck", mod + "backbone"},
		{mod + "edge", mod + "control"},
	}
	imports, err := exec.Command("go", "list", "-f", `{{.ImportPath}}:{{join .Imports " "}}`, mod+"...").CombinedOutput()
	require.NoError(t, err, "%s", imports)
	for _, line := range strings.Split(strings.TrimSpace(string(imports)), "\n") {
		pkg, deps, _ := strings.Cut(line, ":")
		for _, d := range strings.Fields(deps) {
			if strings.HasPrefix(d, "github.com/osrg/gobgp") && !strings.HasPrefix(pkg, mod+"edge/bgp") {
				t.Errorf("%s imports %s: only edge/bgp may speak BGP", pkg, d)
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, ":")
		for _, d := range strings.Fields(deps) {
			if strings.HasPrefix(d, mod+"cmd") {
				t.Errorf("%s imports %s: nothing may import cmd/", pkg, d)
			}
			for _, r := range rules {
				if (pkg == r.from || strings.HasPrefix(pkg, r.from+"/")) && (d == r.forbidden || strings.HasPrefix(d, r.forbidden+"/")) {
					t.Errorf("%s imports %s: %s must not depend on %s", pkg, d, r.from, r.forbidden)
				}
			}
		}
	}
}
