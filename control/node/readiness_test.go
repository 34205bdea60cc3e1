package node

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/router"
)

// fakeView is a router.View of reachable regions and unhealthy endpoints.
type fakeView struct {
	reachable map[string]bool
	unhealthy map[string]bool // "region/id"
}

func (v fakeView) RegionRTT(region string) (time.Duration, bool) {
	return time.Millisecond, v.reachable[region]
}

func (v fakeView) EndpointHealthy(region, id string) bool { return !v.unhealthy[region+"/"+id] }

func listener(acc, proto string, groups ...router.Group) edge.Listener {
	return edge.Listener{Accelerator: acc, Protocol: proto, Route: router.Listener{Key: acc + "/" + proto, Groups: groups}}
}

func group(region string, eps ...router.Endpoint) router.Group {
	return router.Group{Region: region, TrafficDial: 100, Endpoints: eps}
}

// TestDecide: an accelerator is ready only when each of its listeners is;
// a UDP listener with no healthy endpoint takes its accelerator's prefix
// out of the announcement while the other accelerator stays announced.
func TestDecide(t *testing.T) {
	p1 := netip.MustParsePrefix("203.0.113.1/32")
	p2 := netip.MustParsePrefix("203.0.113.2/32")
	accels := []accelView{{name: "a", prefixes: []netip.Prefix{p1}}, {name: "b", prefixes: []netip.Prefix{p2}}}
	ls := []edge.Listener{
		listener("a", "tcp", group("r1", router.Endpoint{ID: "web", Weight: 128})),
		listener("a", "udp", group("r1", router.Endpoint{ID: "dns", Weight: 128})),
		listener("b", "tcp", group("r2", router.Endpoint{ID: "b1", Weight: 128})),
	}
	all := fakeView{reachable: map[string]bool{"r1": true, "r2": true}}
	r := decide(accels, ls, true, all)
	require.True(t, r.all)
	require.Equal(t, []netip.Prefix{p1, p2}, r.announce)

	udpDown := all
	udpDown.unhealthy = map[string]bool{"r1/dns": true}
	r = decide(accels, ls, true, udpDown)
	require.False(t, r.all)
	require.Equal(t, []listenerReadiness{{true, false}, {false, true}, {true, false}}, r.listeners)
	require.Equal(t, []AcceleratorState{{Name: "a", Ready: false, FailOpen: true}, {Name: "b", Ready: true}}, r.accelerators)
	require.Equal(t, []netip.Prefix{p2}, r.announce, "a's prefix is withdrawn, b's stays")

	// A region that is unreachable serves nothing: not ready, not fail-open.
	r = decide(accels, ls, true, fakeView{reachable: map[string]bool{"r2": true}})
	require.Equal(t, []listenerReadiness{{false, false}, {false, false}, {true, false}}, r.listeners)
	require.Equal(t, []netip.Prefix{p2}, r.announce)

	// Weight 0 drains: an endpoint that takes no flow does not make its
	// listener ready.
	drained := []edge.Listener{listener("a", "tcp", group("r1", router.Endpoint{ID: "web", Weight: 0}))}
	r = decide(accels[:1], drained, true, all)
	require.False(t, r.all)
	require.Equal(t, []listenerReadiness{{false, true}}, r.listeners)

	// Not bound: nothing is ready.
	r = decide(accels, ls, false, all)
	require.False(t, r.all)
	require.Empty(t, r.announce)
}

// TestDecideZones: a PoP announces only the prefixes of the zones it
// serves (and those in no zone), and says which zones it serves.
func TestDecideZones(t *testing.T) {
	pa := netip.MustParsePrefix("203.0.113.0/25")
	pb := netip.MustParsePrefix("203.0.113.128/25")
	pn := netip.MustParsePrefix("198.18.200.1/32")
	onlyA := func(z string) bool { return z == "" || z == "a" }
	accels := []accelView{{name: "web", prefixes: []netip.Prefix{pa, pb, pn}, zones: []string{"a", "b", ""}, serves: onlyA}}
	ls := []edge.Listener{listener("web", "tcp", group("r1", router.Endpoint{ID: "w", Weight: 128}))}
	all := fakeView{reachable: map[string]bool{"r1": true}}
	r := decide(accels, ls, true, all)
	require.Equal(t, []netip.Prefix{pa, pn}, r.announce)
	require.Equal(t, []AcceleratorState{{Name: "web", Ready: true, Zones: []string{"a"}}}, r.accelerators)
	r = decide(accels, ls, true, fakeView{})
	require.Empty(t, r.announce, "not ready: nothing of its zones either")
}
