package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/node"
	"github.com/anyedge/anyedge/internal/readme"
	"github.com/anyedge/anyedge/internal/testport"
)

// TestREADMEGameServerExample runs README's custom routing worked example:
// its document loads (with a topology added: the example leaves it out),
// the region eu-central runs in this process, and README's `anyedge ctl`
// commands — allow, port-map, deny — run against it, with the answer
// README shows for the lookup. The region's admin address replaces
// README's 127.0.0.1:9181; port-map reads it from ANYEDGE_ADMIN as README's
// command, which names no address, would.
func TestREADMEGameServerExample(t *testing.T) {
	const marker = "**A worked example: a game-server fleet.**"
	yaml := readme.Fence(t, marker)
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testport.Port(t))
	yaml += fmt.Sprintf(`topology:
  pops: [{name: pop-fra}]
  regions:
    - {name: eu-central, admin: %q, backbone: {listen: "127.0.0.1:%d"}}
    - {name: us-east, backbone: {listen: "127.0.0.1:%d"}}
`, adminAddr, testport.Port(t), testport.Port(t))
	doc, err := config.Load([]byte(yaml), config.LoadOptions{Env: []string{}})
	require.NoError(t, err, "README's game-server document:\n%s", yaml)

	eph, err := pki.NewEphemeral("pop-fra", "eu-central", "us-east")
	require.NoError(t, err)
	store, err := eph.Store("eu-central", nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- node.Run(ctx, node.Options{Doc: doc, Node: "eu-central", Store: store,
			Logger: slog.New(slog.DiscardHandler), Ready: func() { close(ready) }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("region eu-central: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("region eu-central stopped: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("region eu-central not ready within 15 s")
	}

	// README's commands, in order, and the answer it shows for the lookup.
	script := readme.Fence(t, "the region is the authority, since it is the node that dials:")
	shown := regexp.MustCompile(`"listener_port": (\d+), "addresses": \["([^"]+)"\], "allowed": (true|false)`).FindStringSubmatch(script)
	require.NotNil(t, shown, "README shows no port-map answer:\n%s", script)
	wantPort, err := strconv.Atoi(shown[1])
	require.NoError(t, err)
	t.Setenv("ANYEDGE_ADMIN", adminAddr)
	cli := func(line string) string {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(strings.Fields(line)[1:], &out, &errb)
		require.Equal(t, exitOK, code, "%s: %s", line, errb.String())
		return out.String()
	}
	lookup := func(out string) node.PortMapping {
		t.Helper()
		var ans node.PortMapAnswer
		require.NoError(t, json.Unmarshal([]byte(out), &ans), out)
		require.Len(t, ans.Mappings, 1, out)
		require.NotNil(t, ans.Mappings[0].Allowed, out)
		return ans.Mappings[0]
	}
	var ran []string
	var lastLookup string
	for line := range strings.Lines(script) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "anyedge ctl ") {
			continue
		}
		require.True(t, strings.Contains(line, "port-map") || strings.Contains(line, "--admin 127.0.0.1:9181"),
			"README's command talks to an address the test does not replace: %s", line)
		line = strings.ReplaceAll(line, "127.0.0.1:9181", adminAddr)
		out := cli(line)
		ran = append(ran, strings.Fields(line)[2])
		if strings.Contains(line, "port-map") {
			lastLookup = line
			m := lookup(out)
			require.Equal(t, wantPort, int(m.ListenerPort), "README's listener port")
			require.Equal(t, []string{shown[2]}, m.Addresses)
			require.Equal(t, shown[3] == "true", *m.Allowed, "allowed, as README shows it")
			require.Equal(t, "eu-game-a", m.Subnet)
			require.Equal(t, "eu-central", m.Region)
		}
	}
	require.Equal(t, []string{"allow", "port-map", "deny"}, ran, "README's commands")
	// After the deny, the same lookup says the server is no longer allowed.
	require.False(t, *lookup(cli(lastLookup)).Allowed, "after README's deny")
}
