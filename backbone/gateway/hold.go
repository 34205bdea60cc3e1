package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/wire"
)

// Held delivery (wire.FlagHold): the edge names the flow's candidate
// endpoints of this region in its rendezvous order and sends the client's
// first bytes with the header, whatever they are. The region holds those
// bytes in the stream (it reads nothing past the header) while it dials:
// the next candidate at once when a dial fails, and in parallel when a
// dial has not connected within the header's hedge delay. The first dial
// that connects wins; every other dial is cancelled, or closed without a
// byte written to it if it connected too. Only then does the region read
// the stream's bytes, and only towards the winner: a request travels with
// the flow's setup and reaches exactly one endpoint. When every candidate
// fails the region answers the last failure and discards the bytes, so the
// edge may carry them to another region.

// regionCaps is what this region lists in its hello: held streams, and
// the TLS fields of streams whose client's TLS the edge terminated.
var regionCaps = []string{wire.CapHold, wire.CapTLS}

// held is one candidate of a held stream.
type heldCandidate struct {
	idx  int // position in the header's candidates
	ep   *Endpoint
	addr string
}

type heldDial struct {
	heldCandidate
	c    endpointConn
	code wire.Code
}

// dialHeld dials a held stream's candidates until one connects and returns
// it with its index; it refuses the stream (or finds it cancelled by the
// edge) and reports false when none does.
func (g *Gateway) dialHeld(ctx context.Context, peer backbone.Peer, s *quic.Stream, h *wire.Header) (*Endpoint, endpointConn, int, bool) {
	var cands []heldCandidate
	code := wire.CodeUnknownEndpoint
	for i, id := range h.Candidates() {
		ep, addr, c := g.lookup(peer, h, id)
		if c != wire.CodeOK {
			code = c
			continue
		}
		cands = append(cands, heldCandidate{idx: i, ep: ep, addr: addr})
	}
	if len(cands) == 0 {
		g.refuse(s, code)
		return nil, endpointConn{}, 0, false
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan heldDial, len(cands))
	start := time.Now()
	next, inflight := 0, 0
	launch := func() bool {
		if next == len(cands) || (next > 0 && time.Since(start) > wire.HoldBudget) {
			return false
		}
		c := cands[next]
		next++
		inflight++
		go func() {
			ec, code := g.connect(dctx, c.ep, c.addr, h)
			results <- heldDial{heldCandidate: c, c: ec, code: code}
		}()
		return true
	}
	launch()
	var hedge <-chan time.Time
	var timer *time.Timer
	if h.HedgeDelay > 0 && len(cands) > 1 {
		timer = time.NewTimer(h.HedgeDelay)
		defer timer.Stop()
		hedge = timer.C
	}
	var won *heldDial
	gone := false // the edge cancelled the stream
	for inflight > 0 && won == nil && !gone {
		select {
		case r := <-results:
			inflight--
			if r.c.raw != nil {
				won = &r
				break
			}
			code = r.code
			if launch() && timer != nil {
				timer.Reset(h.HedgeDelay)
			}
		case <-hedge:
			if launch() {
				g.rl.Log(slog.LevelInfo, "hedge "+cands[next-1].ep.ID, "held flow: dial slow, hedged to the next endpoint",
					"peer", peer.Name, "slow", cands[next-2].ep.ID, "next", cands[next-1].ep.ID)
				timer.Reset(h.HedgeDelay)
			}
		case <-s.Context().Done():
			gone = true
		}
	}
	if inflight > 0 {
		// Losers: cancel their dials, and close any that connected anyway
		// before a byte was written to it.
		cancel()
		go func(n int) {
			for range n {
				if r := <-results; r.c.raw != nil {
					_ = r.c.raw.Close()
				}
			}
		}(inflight)
	}
	if gone || s.Context().Err() != nil {
		// The edge gave up on this region (it moved the flow): deliver
		// nothing.
		if won != nil {
			_ = won.c.raw.Close()
		}
		s.CancelRead(wire.StreamReset)
		s.CancelWrite(wire.StreamReset)
		return nil, endpointConn{}, 0, false
	}
	if won == nil {
		g.refuse(s, code)
		return nil, endpointConn{}, 0, false
	}
	return won.ep, won.c, won.idx, true
}
