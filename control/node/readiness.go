package node

import (
	"net/netip"
	"slices"

	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/router"
)

// readiness is what decide says of an edge's listeners and accelerators.
type readiness struct {
	// listeners, in the order of the listeners given to decide.
	listeners []listenerReadiness
	// accelerators, in the order of the accelerators given to decide.
	accelerators []AcceleratorState
	// announce lists the prefixes of the ready accelerators.
	announce []netip.Prefix
	// all is set when every accelerator is ready.
	all bool
}

type listenerReadiness struct {
	ready, failOpen bool
}

// decide is the one place where an edge decides what it can serve. A
// listener is ready when it is bound and some reachable region has a
// healthy endpoint of weight above zero for it; it fails open when a
// region is reachable but none of its endpoints there is healthy (flows
// are then spread over all of them). An accelerator is ready when each of
// its listeners is, and only ready accelerators' prefixes are announced —
// those of the network zones this PoP serves, so that a PoP never
// announces (nor withdraws) another zone's address.
func decide(accels []accelView, listeners []edge.Listener, bound bool, v router.View) readiness {
	var r readiness
	byAccel := map[string][]listenerReadiness{}
	for _, l := range listeners {
		lr := listenerState(l.Route, bound, v)
		r.listeners = append(r.listeners, lr)
		byAccel[l.Accelerator] = append(byAccel[l.Accelerator], lr)
	}
	r.all = true
	for _, a := range accels {
		st := AcceleratorState{Name: a.name, Ready: bound}
		for _, lr := range byAccel[a.name] {
			st.Ready = st.Ready && lr.ready
			st.FailOpen = st.FailOpen || lr.failOpen
		}
		for i, p := range a.prefixes {
			zone := ""
			if i < len(a.zones) {
				zone = a.zones[i]
			}
			if a.serves != nil && !a.serves(zone) {
				continue
			}
			if zone != "" && !slices.Contains(st.Zones, zone) {
				st.Zones = append(st.Zones, zone)
			}
			if st.Ready {
				r.announce = append(r.announce, p)
			}
		}
		r.accelerators = append(r.accelerators, st)
		if !st.Ready {
			r.all = false
		}
	}
	return r
}

func listenerState(l router.Listener, bound bool, v router.View) listenerReadiness {
	reachable, healthy := false, false
	for _, g := range l.Groups {
		if _, ok := v.RegionRTT(g.Region); !ok {
			continue
		}
		reachable = true
		for _, e := range g.Endpoints {
			if e.Weight > 0 && v.EndpointHealthy(g.Region, e.ID) {
				healthy = true
			}
		}
	}
	return listenerReadiness{ready: bound && reachable && healthy, failOpen: reachable && !healthy}
}
