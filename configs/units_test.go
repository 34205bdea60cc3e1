package configs_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/control/config"

	"github.com/anyedge/anyedge/internal/needs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// unit is a systemd unit file: every value of every key of [Service].
type unit map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "%s: %q", path, line)
			u[section+"."+k] = append(u[section+"."+k], v)
		}
	}
	require.NoError(t, sc.Err())
	return u
}

func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	require.Len(t, u[key], 1, key)
	return u[key][0]
}

// TestUnitsHardened checks the directives of both unit templates: a
// dedicated user, only the capabilities each role needs, a read-only
// system, the node name from the instance, a restart policy, and for the
// edge a watchdog that kills a hung edge within 1 s.
func TestUnitsHardened(t *testing.T) {
	for _, c := range []struct {
		file, role string
		caps       string
	}{
		{"anyedge-edge@.service", "edge", "CAP_NET_BIND_SERVICE CAP_NET_ADMIN"},
		{"anyedge-region@.service", "region", "CAP_NET_BIND_SERVICE"},
	} {
		t.Run(c.role, func(t *testing.T) {
			u := readUnit(t, c.file)
			for k, want := range map[string]string{
				"Service.User": "anyedge", "Service.Group": "anyedge",
				"Service.Type": "notify", "Service.NotifyAccess": "main",
				"Service.NoNewPrivileges": "yes", "Service.ProtectSystem": "strict",
				"Service.ProtectHome": "yes", "Service.PrivateTmp": "yes", "Service.PrivateDevices": "yes",
				"Service.Restart": "on-failure", "Service.KillSignal": "SIGTERM",
				"Service.AmbientCapabilities": c.caps, "Service.CapabilityBoundingSet": c.caps,
				"Service.UMask": "0077",
			} {
				require.Equal(t, want, u.one(t, k), k)
			}
			exec := strings.Fields(u.one(t, "Service.ExecStart"))
			require.Equal(t, []string{"/usr/local/bin/anyedge", c.role}, exec[:2])
			require.Contains(t, strings.Join(exec, " "), "--node %i", "the node name is the instance name")
			for _, f := range u["Service.EnvironmentFile"] {
				require.Contains(t, f, "%i", "an environment file shared by every instance cannot name the node")
			}
		})
	}

	edge := readUnit(t, "anyedge-edge@.service")
	wd, err := time.ParseDuration(edge.one(t, "Service.WatchdogSec"))
	require.NoError(t, err)
	require.LessOrEqual(t, wd, time.Second, "a hung edge must lose its routes within 1 s")
	require.Equal(t, "SIGKILL", edge.one(t, "Service.WatchdogSignal"), "a stopped process acts on no other signal")

	stop, err := strconv.Atoi(edge.one(t, "Service.TimeoutStopSec"))
	require.NoError(t, err)
	doc := config.Document{Topology: config.Topology{PoPs: []config.PoP{{Name: "p"}}}}.WithDefaults()
	pop := doc.Topology.PoPs[0]
	require.Greater(t, time.Duration(stop)*time.Second, pop.Drain.BGPGrace+pop.Drain.Timeout,
		"systemd must let a default drain finish before it kills the edge")
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// TestUnitsSecurityScore runs `systemd-analyze security --offline` on an
// instance of each template and requires an exposure of at most 2.5.
func TestUnitsSecurityScore(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		needs.Skip(t, "systemd-analyze not installed (Debian systemd)")
	}
	dir := t.TempDir()
	for _, tmpl := range []string{"anyedge-edge@.service", "anyedge-region@.service"} {
		b, err := os.ReadFile(tmpl)
		require.NoError(t, err)
		inst := filepath.Join(dir, strings.Replace(tmpl, "@", "@test", 1))
		require.NoError(t, os.WriteFile(inst, b, 0o644))
		out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", inst).CombinedOutput()
		if err != nil && strings.Contains(string(out), "offline") {
			needs.Skipf(t, "this systemd-analyze cannot analyse offline: %s", out)
		}
		m := exposureRE.FindSubmatch(out)
		require.NotNil(t, m, "%s: %s", tmpl, out)
		score, err := strconv.ParseFloat(string(m[1]), 64)
		require.NoError(t, err)
		t.Logf("systemd-analyze security %s: %.1f", tmpl, score)
		require.LessOrEqual(t, score, 2.5, "%s:\n%s", tmpl, out)
	}
}
