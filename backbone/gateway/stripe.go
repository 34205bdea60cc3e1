package gateway

import (
	"log/slog"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/stripe"
	"github.com/anyedge/anyedge/backbone/wire"
)

// stripeKey names a striped flow: an edge picks the ID, so it is only
// unique per edge (the peer's certificate name).
type stripeKey struct {
	peer string
	id   uint64
}

// startStripe turns an answered striped stream into the flow's first lane
// and registers the flow, so that the lanes the edge opens on its other
// connections find it; it is unregistered when every lane has ended.
func (g *Gateway) startStripe(peer backbone.Peer, s *quic.Stream, id uint64) *stripe.Conn {
	key := stripeKey{peer.Name, id}
	cfg := backbone.FlowStripeConfig(peer.Conn.ConnectionStats().SmoothedRTT)
	cfg.Done = func() {
		g.stripeMu.Lock()
		delete(g.stripes, key)
		g.stripeMu.Unlock()
	}
	g.stripeMu.Lock()
	defer g.stripeMu.Unlock()
	sc := stripe.New(s, cfg)
	if g.stripes == nil {
		g.stripes = map[stripeKey]*stripe.Conn{}
	}
	g.stripes[key] = sc
	return sc
}

// serveLane joins a lane stream to its striped flow; a lane for a flow
// this region does not have (ended, or never opened by that edge) is reset.
func (g *Gateway) serveLane(peer backbone.Peer, s *quic.Stream, h *wire.Header) {
	g.stripeMu.Lock()
	sc := g.stripes[stripeKey{peer.Name, h.FlowID}]
	g.stripeMu.Unlock()
	if sc == nil {
		g.rl.Log(slog.LevelWarn, "unknown striped flow "+peer.Name, "lane for an unknown striped flow", "peer", peer.Name, "flow", h.FlowID)
		s.CancelRead(wire.StreamReset)
		s.CancelWrite(wire.StreamReset)
		return
	}
	sc.AddLane(s)
}
