package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/node"
)

// override sends one override to the node at adminAddr, as anyedge ctl
// does.
func override(t *testing.T, adminAddr, kind, name string, value int) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := admin.NewClient(adminAddr, nil)
	defer c.Close()
	req := admin.OverrideRequest{Kind: kind, Name: name}
	if kind != admin.OverrideReset {
		req.Value = &value
	}
	_, err := c.Post(ctx, "/overrides", req)
	return err
}

// servedBy opens n new flows through addr and counts them by endpoint.
func servedBy(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		id, err := request(addr, 5*time.Second)
		require.NoError(t, err)
		out[id]++
	}
	return out
}

// TestOverrides runs an edge and regions r1 (preferred: e1a, e1b) and r2
// (e2) and overrides them at run time, as an operator in an incident
// would: a weight moves new flows, a dial of 0 drains a region, a reload
// keeps the overrides (and drops one whose endpoint it removes), unknown
// names are refused, and reset restores the document's values.
func TestOverrides(t *testing.T) {
	e1a, e1b, e2 := startEcho(t, "e1a", nil), startEcho(t, "e1b", nil), startEcho(t, "e2", nil)
	f := newFleet(t)
	f.r1Eps = []string{"e1a=" + e1a.addr(), "e1b=" + e1b.addr()}
	f.r2Eps = []string{"e2=" + e2.addr()}
	loaded := func(extra string) config.Loaded {
		l, err := config.Parse([]byte(f.yaml()+extra), config.LoadOptions{Env: []string{}})
		require.NoError(t, err)
		return l
	}
	updates := updatableNodes(t, loaded(""), "r1", "r2", "pop")
	edgeAddr, popAdmin := f.edgeAddr(), fmt.Sprintf("127.0.0.1:%d", f.adminPoP)
	waitServing(t, edgeAddr)
	// Until r1, the preferred region, serves with both endpoints.
	for tries := 0; ; tries++ {
		got := servedBy(t, edgeAddr, 20)
		if got["e1a"] > 0 && got["e1b"] > 0 && got["e2"] == 0 {
			break
		}
		require.Less(t, tries, 100, "r1 never served with both endpoints: %v", got)
	}

	// A weight of 0: e1a gets no new flow.
	require.NoError(t, override(t, popAdmin, "weight", "e1a", 0))
	require.Equal(t, map[string]int{"e1b": 30}, servedBy(t, edgeAddr, 30))
	// A dial of 0: r1 gets no new flow, r2 takes them.
	require.NoError(t, override(t, popAdmin, "dial", "r1", 0))
	require.Equal(t, map[string]int{"e2": 30}, servedBy(t, edgeAddr, 30))
	st, err := edgeStatus(popAdmin)
	require.NoError(t, err)
	require.Len(t, st.Config.Overrides, 2)
	require.Equal(t, []string{"dial r1 0", "weight e1a 0"}, overrideNames(st.Config.Overrides))
	require.Equal(t, "ctl dial r1 0", st.Config.LastReload.Trigger)
	require.Equal(t, node.ReloadApplied, st.Config.LastReload.Result)
	m := scrape(t, popAdmin)
	require.Equal(t, 1.0, m[`anyedge_config_overrides{kind="dial"}`])
	require.Equal(t, 1.0, m[`anyedge_config_overrides{kind="weight"}`])

	// Unknown names and values out of range are refused, naming them.
	for _, c := range []struct {
		kind, name string
		value      int
		want       string
	}{
		{"weight", "e9", 0, `404 Not Found: weight: no endpoint "e9" in the document in force`},
		{"dial", "r9", 0, `404 Not Found: dial: no region "r9" in the document in force (regions: r1, r2)`},
		{"weight", "e1b", 256, "400 Bad Request: weight e1b: 256 is outside 0–255"},
		{"dial", "r2", -1, "400 Bad Request: dial r2: -1 is outside 0–100"},
		{"drain", "r2", 0, `unknown override "drain"`},
	} {
		require.ErrorContains(t, override(t, popAdmin, c.kind, c.name, c.value), c.want)
	}

	// A reload of a new revision keeps the overrides.
	l := loaded("# a comment: a new revision\n")
	send(t, updates["pop"], config.Update{Loaded: l, Trigger: "test"})
	st = waitStatus(t, popAdmin, "the new revision", func(st node.EdgeStatus) bool { return st.Config.Revision == string(l.Revision) })
	require.Equal(t, []string{"dial r1 0", "weight e1a 0"}, overrideNames(st.Config.Overrides))
	require.Equal(t, map[string]int{"e2": 20}, servedBy(t, edgeAddr, 20))

	// A reload that removes e1a drops its override, and keeps the dial.
	f.r1Eps = f.r1Eps[1:]
	l = loaded("")
	send(t, updates["pop"], config.Update{Loaded: l, Trigger: "test"})
	st = waitStatus(t, popAdmin, "e1a removed", func(st node.EdgeStatus) bool { return st.Config.Revision == string(l.Revision) })
	require.Equal(t, []string{"dial r1 0"}, overrideNames(st.Config.Overrides))
	require.ErrorContains(t, override(t, popAdmin, "weight", "e1a", 1), `no endpoint "e1a"`)
	require.Equal(t, map[string]int{"e2": 20}, servedBy(t, edgeAddr, 20))

	// Reset: the document's values again; r1 serves.
	require.NoError(t, override(t, popAdmin, "reset", "", 0))
	require.Equal(t, map[string]int{"e1b": 20}, servedBy(t, edgeAddr, 20))
	st, err = edgeStatus(popAdmin)
	require.NoError(t, err)
	require.Empty(t, st.Config.Overrides)
	require.Equal(t, 0.0, scrape(t, popAdmin)[`anyedge_config_overrides{kind="dial"}`])

	// A region takes overrides too: its status shows the weight it runs.
	r1Admin := fmt.Sprintf("127.0.0.1:%d", f.adminR1)
	require.NoError(t, override(t, r1Admin, "weight", "e1b", 7))
	rs := waitRegion(t, r1Admin, "e1b's weight overridden", func(st node.RegionStatus) bool {
		for _, e := range st.Endpoints {
			if e.ID == "e1b" {
				return e.Weight == 7
			}
		}
		return false
	})
	require.Equal(t, []string{"weight e1b 7"}, overrideNames(rs.Config.Overrides))
}

func overrideNames(os []node.OverrideStatus) []string {
	var out []string
	for _, o := range os {
		out = append(out, fmt.Sprintf("%s %s %d", o.Kind, o.Name, o.Value))
	}
	return out
}
