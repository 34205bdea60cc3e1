package node_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/node"
)

// probeCheck is the health_check of the probe test's group: one failed
// probe marks a destination down, one passing probe brings it back.
const probeCheck = "            health_check: {interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1}\n"

// probeDown finds dest among the region's down destinations, marked by
// its probe.
func probeDown(st node.RegionStatus, dest netip.AddrPort) (node.DownState, bool) {
	i := slices.IndexFunc(st.CustomRouting.Down, func(d node.DownState) bool { return d.Destination == dest && d.Probe })
	if i < 0 {
		return node.DownState{}, false
	}
	return st.CustomRouting.Down[i], true
}

// TestCustomRoutingProbes: the region probes the custom routing
// destinations allowed one by one (address and port) in a group with a
// health_check. A destination whose server stops is marked down by its
// probe before any client flow fails, the edge then refuses its flows at
// once, and it comes back with its server. A run-time allow of one
// destination starts a probe and a deny stops it (and drops the probe's
// mark); whole addresses and subnets are not probed; a reload that drops
// the health_check stops every probe.
func TestCustomRoutingProbes(t *testing.T) {
	l := newCustomLab(t,
		"            destination_ports:", probeCheck+"            destination_ports:",
		"allow: [{addresses: [127.77.0.1, 127.77.0.5, 127.77.0.14]}]", "allow: [{addresses: [127.77.0.1], ports: [DESTPORT]}, {addresses: [127.77.0.5]}]",
		"              - id: sub-b\n", "              - id: sub-b\n                allow_all_traffic: true\n")
	one := l.dest("127.77.0.1")
	server := startDestination(t, one)
	startDestination(t, l.dest("127.77.0.5"))
	loaded, err := config.Parse([]byte(l.yaml), config.LoadOptions{Env: []string{}})
	require.NoError(t, err)
	updates := updatableNodes(t, loaded, "r1", "pop")

	region := func(what string, cond func(node.RegionStatus) bool) node.RegionStatus {
		t.Helper()
		return waitRegion(t, l.regionAdmin, what, func(st node.RegionStatus) bool { return st.CustomRouting != nil && cond(st) })
	}
	st := region("one destination probed and up", func(st node.RegionStatus) bool { return st.CustomRouting.Probed == 1 })
	require.Empty(t, st.CustomRouting.Down, "127.77.0.5 (a whole address) and sub-b (a whole subnet) are not probed")
	_, err = ask(l.port("127.77.0.1"))
	require.NoError(t, err)

	t.Run("a stopped server is marked down by its probe", func(t *testing.T) {
		server.stop()
		st := region("the probe marks it down", func(st node.RegionStatus) bool { _, ok := probeDown(st, one); return ok })
		d, _ := probeDown(st, one)
		require.Equal(t, "sub-a", d.Subnet)
		require.Contains(t, d.Reason, "refused")
		require.Nil(t, d.Until, "down while its probe fails, not for a while")
		es := waitStatus(t, l.popAdmin, "the edge holds the probe's mark", func(st node.EdgeStatus) bool {
			return st.CustomRouting != nil && len(st.CustomRouting.Regions) == 1 &&
				slices.ContainsFunc(st.CustomRouting.Regions[0].Down, func(d node.DownState) bool { return d.Destination == one && d.Probe })
		})
		require.Zero(t, es.Flows.Refused["endpoint_failed"], "no client flow failed first")

		require.NoError(t, refusedQuickly(l.port("127.77.0.1")))
		es = waitStatus(t, l.popAdmin, "refused at the edge", func(st node.EdgeStatus) bool {
			return st.Flows.Refused["no_healthy_endpoint"] >= 1
		})
		require.Zero(t, es.Flows.Refused["endpoint_failed"], "refused without a dial")
	})
	t.Run("it comes back with its server", func(t *testing.T) {
		server = startDestination(t, one)
		region("the probe clears it", func(st node.RegionStatus) bool { return len(st.CustomRouting.Down) == 0 })
		waitStatus(t, l.popAdmin, "the edge learns it", func(st node.EdgeStatus) bool {
			return len(st.CustomRouting.Regions[0].Down) == 0
		})
		got, err := ask(l.port("127.77.0.1"))
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(got, one.String()+" "), got)
	})
	t.Run("run-time allow starts a probe, deny stops it", func(t *testing.T) {
		six := l.dest("127.77.0.6") // nothing serves it
		_, err := adminPost(l.regionAdmin, "/custom-routing/allow", fmt.Sprintf(`{"subnet":"sub-a","addresses":["127.77.0.6"],"ports":[%d]}`, l.destPort))
		require.NoError(t, err)
		st := region("127.77.0.6 probed and down", func(st node.RegionStatus) bool { _, ok := probeDown(st, six); return ok })
		require.Equal(t, 2, st.CustomRouting.Probed)

		_, err = adminPost(l.regionAdmin, "/custom-routing/allow", `{"subnet":"sub-a","addresses":["127.77.0.9"]}`)
		require.NoError(t, err)
		_, err = adminPost(l.regionAdmin, "/custom-routing/deny", fmt.Sprintf(`{"subnet":"sub-a","addresses":["127.77.0.6"],"ports":[%d]}`, l.destPort))
		require.NoError(t, err)
		st = region("127.77.0.6 no longer probed", func(st node.RegionStatus) bool { _, ok := probeDown(st, six); return !ok })
		require.Equal(t, 1, st.CustomRouting.Probed, "a whole address allowed at run time is not probed")
	})
	t.Run("a reload without health_check stops the probes", func(t *testing.T) {
		server.stop()
		region("the probe marks it down", func(st node.RegionStatus) bool { _, ok := probeDown(st, one); return ok })
		l2, err := config.Parse([]byte(strings.Replace(l.yaml, probeCheck, "", 1)), config.LoadOptions{Env: []string{}})
		require.NoError(t, err)
		send(t, updates["r1"], config.Update{Loaded: l2, Trigger: "test"})
		st := region("no probes", func(st node.RegionStatus) bool { return st.Config.Revision == string(l2.Revision) })
		require.Zero(t, st.CustomRouting.Probed)
		region("the probe's mark is gone", func(st node.RegionStatus) bool { _, ok := probeDown(st, one); return !ok })
	})
}
