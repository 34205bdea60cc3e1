package node

import (
	"log/slog"
	"time"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/udp"
)

// udpForwarder builds (Listen binds) the edge's UDP forwarder from the
// document's "udp" listeners (edge.New skips them); nil when there are
// none. The forwarder runs next to the TCP edge on the same backbone
// clients.
func udpForwarder(listeners []edge.Listener, pop *config.PoP, regions edge.Regions, heartbeat time.Duration, log *slog.Logger) (*udp.Forwarder, error) {
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
	if len(uls) == 0 {
		return nil, nil
	}
	f, err := udp.New(udp.Config{
		Listeners:         uls,
		MaxFlows:          pop.UDP.MaxFlows,
		MaxFlowsPerSource: pop.UDP.MaxFlowsPerSource,
		RateBuckets:       pop.Limits.RateBuckets,
		Logger:            log,
		Heartbeat:         heartbeat,
	}, udp.Regions(regions))
	if err != nil {
		return nil, err
	}
	return f, nil
}
