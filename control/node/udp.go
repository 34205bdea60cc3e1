package node

import (
	"log/slog"
	"time"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/udp"
)

// udpForwarder builds (Listen binds) the edge's UDP forwarder from the
// document's "udp" listeners (edge.New skips them), with none if the
// document has none: a reload may add some. The forwarder runs next to
// the TCP edge on the same backbone clients.
func udpForwarder(listeners []edge.Listener, pop *config.PoP, regions edge.Regions, heartbeat time.Duration, log *slog.Logger) (*udp.Forwarder, error) {
	return udp.New(udp.Config{
		Listeners:         udpListeners(listeners),
		MaxFlows:          pop.UDP.MaxFlows,
		MaxFlowsPerSource: pop.UDP.MaxFlowsPerSource,
		RateBuckets:       pop.Limits.RateBuckets,
		Logger:            log,
		Heartbeat:         heartbeat,
	}, udp.Regions(regions))
}

// udpListeners are the UDP listeners of listeners, as the forwarder
// takes them.
func udpListeners(listeners []edge.Listener) []udp.Listener {
	var uls []udp.Listener
	for _, l := range listeners {
		if l.Protocol != "udp" {
			continue
		}
		ul := udp.Listener{Accelerator: l.Accelerator, Addrs: l.Addrs, IdleTimeout: l.IdleTimeout, Route: l.Route, Meter: l.Meter, Custom: l.Custom, Admission: l.Admission}
		for _, r := range l.Ports {
			ul.Ports = append(ul.Ports, udp.PortRange{From: r.From, To: r.To})
		}
		uls = append(uls, ul)
	}
	return uls
}
