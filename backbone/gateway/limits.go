package gateway

import (
	"log/slog"
	"sync"
)

// Limits are a region's own caps on the flows it serves, TCP and UDP
// together. A new flow over a cap is answered wire.CodeOverloaded, which
// an edge takes as "try another region"; flows already served are never
// touched. Zero is no cap.
type Limits struct {
	// MaxFlows caps the region's flows.
	MaxFlows int
	// MaxFlowsPerEdge caps the flows one edge opened (a UDP flow counts
	// for the edge that opened it, even when anycast moves its client to
	// another), so that one edge cannot take the whole region.
	MaxFlowsPerEdge int
}

// caps counts the flows admitted, in all and by the edge that opened
// them, from admission (before the dial) to their end.
type caps struct {
	// mu guards total and perEdge.
	mu      sync.Mutex
	total   int
	perEdge map[string]int
}

// admitFlow takes a flow from edge within the region's limits; release
// gives it back (exactly once). ok is false when a cap is reached; the
// caller answers CodeOverloaded.
func (g *Gateway) admitFlow(edge string) (release func(), ok bool) {
	l := g.cfg.Limits
	c := &g.caps
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.MaxFlows > 0 && c.total >= l.MaxFlows ||
		l.MaxFlowsPerEdge > 0 && c.perEdge[edge] >= l.MaxFlowsPerEdge {
		g.rl.Log(slog.LevelWarn, "overloaded "+edge, "region at its flow limit: new flows refused as overloaded",
			"peer", edge, "flows", c.total, "max_flows", l.MaxFlows, "max_flows_per_edge", l.MaxFlowsPerEdge)
		return nil, false
	}
	if c.perEdge == nil {
		c.perEdge = map[string]int{}
	}
	c.total++
	c.perEdge[edge]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.total--
			if c.perEdge[edge]--; c.perEdge[edge] <= 0 {
				delete(c.perEdge, edge)
			}
		})
	}, true
}
