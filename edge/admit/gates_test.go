package admit_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/flow"
)

func TestGatesAcrossReloads(t *testing.T) {
	gs := admit.NewGates(nil, 0)
	require.False(t, gs.SetRules("web", admit.Rules{MaxFlows: 1}), "no gate before the first commit")

	u := gs.Prepare()
	web, api := u.Gate("web", admit.Rules{MaxFlows: 10}), u.Gate("api", admit.Rules{MaxFlows: 20})
	require.NotSame(t, web, api)
	require.Equal(t, 10, web.Rules().MaxFlows, "a new gate has its rules at once")
	require.False(t, gs.SetRules("web", admit.Rules{MaxFlows: 1}), "not in force before Commit")
	u.Commit()
	require.True(t, gs.SetRules("web", admit.Rules{MaxFlows: 11}))
	require.Equal(t, 11, web.Rules().MaxFlows)

	// web stays with new rules, api goes, games comes; nothing changes
	// until Commit.
	pass, reason := web.Admit(addr("198.18.0.1"), t0)
	require.Zero(t, reason)
	u = gs.Prepare()
	require.Same(t, web, u.Gate("web", admit.Rules{MaxFlows: 12}), "a listener whose key stays keeps its gate")
	games := u.Gate("games", admit.Rules{MaxFlows: 30})
	require.NotSame(t, api, games)
	require.Equal(t, 11, web.Rules().MaxFlows, "a kept gate's new rules wait for Commit")
	require.True(t, gs.SetRules("api", admit.Rules{MaxFlows: 21}), "api is in force until Commit")
	u.Commit()
	require.Equal(t, 12, web.Rules().MaxFlows)
	require.Equal(t, int64(1), web.Flows(), "its counters carry over")
	pass.Done()
	require.False(t, gs.SetRules("api", admit.Rules{}), "a gate gone is dropped")
	require.True(t, gs.SetRules("games", admit.Rules{MaxFlows: 31}))
	require.Equal(t, 31, games.Rules().MaxFlows)

	// An update never committed (a reload that failed) changes nothing.
	u = gs.Prepare()
	require.Same(t, web, u.Gate("web", admit.Rules{MaxFlows: 99}))
	u.Gate("other", admit.Rules{})
	require.Equal(t, 12, web.Rules().MaxFlows)
	require.False(t, gs.SetRules("other", admit.Rules{}))
}

func TestGatesCountAgainstGlobal(t *testing.T) {
	global := admit.NewGlobal(1)
	gs := admit.NewGates(global, 0)
	u := gs.Prepare()
	a, b := u.Gate("a", admit.Rules{}), u.Gate("b", admit.Rules{})
	u.Commit()
	pass, reason := a.Admit(addr("198.18.0.1"), t0)
	require.Zero(t, reason)
	_, reason = b.Admit(addr("198.18.0.2"), t0)
	require.Equal(t, flow.ConnLimit, reason, "new gates share the process-wide cap")
	pass.Done()
	require.Zero(t, global.Conns())
}
