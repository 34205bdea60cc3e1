package gateway

import (
	"net"

	"github.com/anyedge/anyedge/backbone/splice"
	"github.com/anyedge/anyedge/backbone/wire"
)

// A reload that removes an endpoint (SetEndpoints) or a custom routing
// subnet (SetCustom) cuts the flows to it: the region no longer dials it,
// and no flow it carries should outlive its configuration. Each stream is
// reset with wire.StreamEndpointRemoved, so that the edge counts the
// flow's end as endpoint_removed; the endpoint side is reset (TCP) or its
// socket closed (UDP). Flows to endpoints that stay are untouched.

// tcpFlow is an open TCP flow, tracked for the cut.
type tcpFlow struct {
	id   string // the endpoint or subnet ID
	conn *net.TCPConn
	str  splice.Stream // guarded by Gateway.tcpMu
}

// known reports whether id is an endpoint or a custom routing subnet of
// the configuration in force.
func (g *Gateway) known(id string) bool {
	if (*g.table.Load())[id] != nil {
		return true
	}
	if st := g.custom.state.Load(); st != nil {
		_, ok := st.subnets[id]
		return ok
	}
	return false
}

// trackTCP records a TCP flow about to be spliced; false when its
// endpoint was removed meanwhile (the caller then ends it).
func (g *Gateway) trackTCP(f *tcpFlow) bool {
	g.tcpMu.Lock()
	defer g.tcpMu.Unlock()
	if g.tcpClosed || !g.known(f.id) {
		return false
	}
	if g.tcpFlows == nil {
		g.tcpFlows = map[*tcpFlow]struct{}{}
	}
	g.tcpFlows[f] = struct{}{}
	return true
}

// closeTCP resets every TCP flow still spliced, and every later one
// (Close).
func (g *Gateway) closeTCP() {
	g.tcpMu.Lock()
	defer g.tcpMu.Unlock()
	g.tcpClosed = true
	for f := range g.tcpFlows {
		delete(g.tcpFlows, f)
		f.str.CancelWrite(wire.StreamShutdown)
		f.str.CancelRead(wire.StreamShutdown)
		_ = f.conn.SetLinger(0)
		_ = f.conn.Close()
	}
}

func (g *Gateway) untrackTCP(f *tcpFlow) {
	g.tcpMu.Lock()
	delete(g.tcpFlows, f)
	g.tcpMu.Unlock()
}

// cutRemoved ends every flow, TCP and UDP, whose endpoint or subnet the
// configuration in force no longer has, and returns how many.
func (g *Gateway) cutRemoved() int {
	n := 0
	g.tcpMu.Lock()
	for f := range g.tcpFlows {
		if g.known(f.id) {
			continue
		}
		delete(g.tcpFlows, f)
		f.str.CancelWrite(wire.StreamEndpointRemoved)
		f.str.CancelRead(wire.StreamEndpointRemoved)
		_ = f.conn.SetLinger(0)
		_ = f.conn.Close()
		n++
	}
	g.tcpMu.Unlock()
	u := &g.udp
	var cut []*udpFlow
	u.mu.Lock()
	for k, f := range u.flows {
		if !g.known(k.endpoint) {
			cut = append(cut, f)
		}
	}
	u.mu.Unlock()
	for _, f := range cut {
		g.closeFlowWith(f, wire.StreamEndpointRemoved)
	}
	if n += len(cut); n > 0 {
		g.log.Info("flows cut: their endpoint was removed", "flows", n)
	}
	return n
}
