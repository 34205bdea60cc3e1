package edge

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/internal/bindset"
	"github.com/anyedge/anyedge/edge/router"
)

// Update is a change of an Edge's listeners and regions (a hot reload),
// prepared and not yet in force: Prepare compiled the routing tables and
// bound the sockets that are new; Commit puts it in force, Abort drops
// it. An Edge has at most one Update pending, and Prepare, Commit and
// Abort are called from one goroutine.
type Update struct {
	e         *Edge
	listeners []Listener
	regions   Regions
	gates     *admit.GatesUpdate
	// set is the change of the edge's sockets: the plan of every address
	// and port of the new listeners, and the sockets bound for new ones.
	set *bindset.Update[*boundListener, *tcpSocket]
}

// Changes says what a Commit did.
type Changes = bindset.Changes

// Prepare compiles the TCP listeners of listeners (others are skipped, as
// in New) against regions, which must hold every region they route to,
// and binds the addresses and ports that no socket of the edge serves
// yet. Nothing changes for flows until Commit. On error nothing stays
// bound. An edge that no longer accepts (StopAccepting, Close) binds
// nothing new.
func (e *Edge) Prepare(listeners []Listener, regions Regions) (*Update, error) {
	ls, err := tcpListeners(listeners, regions)
	if err != nil {
		return nil, err
	}
	gates := e.gates.Prepare()
	bls, err := e.compile(ls, gates)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	have, open := bindset.Serving(e.socks), !e.noAccept && !e.closed
	e.mu.Unlock()
	set, err := bindset.Prepare(bls, have, open, bindTCP)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	return &Update{e: e, listeners: ls, regions: regions, gates: gates, set: set}, nil
}

// Key implements bindset.Listener.
func (bl *boundListener) Key() string { return bl.l.Route.Key }

// AddrPorts implements bindset.Listener.
func (bl *boundListener) AddrPorts() []netip.AddrPort { return bindset.Expand(bl.l.Addrs, bl.l.Ports) }

// Commit puts the update in force: every socket kept serves its new
// listener configuration from its next connection on, the new sockets
// start accepting, the sockets of removed addresses and ports are closed.
// Flows taken by a closed socket end with flow.ListenerRemoved, flows to
// an endpoint their listener no longer routes to with
// flow.EndpointRemoved; every other flow goes on untouched.
func (u *Update) Commit() Changes {
	if u.set.Done() {
		return Changes{}
	}
	e := u.e
	e.mu.Lock()
	u.gates.Commit()
	var start func(*tcpSocket)
	if ctx := e.runCtx; ctx != nil {
		start = func(s *tcpSocket) { e.accepting.Go(func() { e.acceptLoop(ctx, s) }) }
	}
	var ch Changes
	e.socks, ch = u.set.Commit(e.socks, !e.noAccept && !e.closed, start)
	for c, fl := range e.conns {
		if reason := fl.cutReason(); reason != 0 {
			e.cutLocked(c, fl, reason)
			ch.Cut[reason]++
		}
	}
	e.view.setRegions(u.regions)
	e.listeners.Store(&u.listeners)
	if e.runCtx != nil && !e.closed {
		e.watchLocked(e.watchCtx, u.listeners)
	}
	e.mu.Unlock()
	u.set.Log(e.log, "tcp", ch)
	return ch
}

// Abort drops a prepared update and closes the sockets it bound.
func (u *Update) Abort() { u.set.Abort() }

// cutReason says why a reload ends fl now: its socket was removed, or its
// listener no longer routes to its endpoint; zero when it goes on.
// Edge.mu is held.
func (fl *tcpFlow) cutReason() flow.Reason {
	switch {
	case fl.cut != 0:
		return 0 // already cut
	case fl.sock.removed:
		return flow.ListenerRemoved
	case fl.choice != (router.Choice{}) && !fl.sock.cur.Load().serves[fl.choice]:
		return flow.EndpointRemoved
	}
	return 0
}

// cutLocked ends the flow of c for reason: its connection is reset and
// its stream, if it has one yet, too (a reload's cut as a reset, the
// edge's end as a shutdown); the flow's end is reported with reason.
// Edge.mu is held.
func (e *Edge) cutLocked(c *net.TCPConn, fl *tcpFlow, reason flow.Reason) {
	if fl.cut != 0 {
		return
	}
	fl.cut = reason
	_ = c.SetLinger(0)
	_ = c.Close()
	code := wire.StreamReset
	if reason == flow.Shutdown {
		code = wire.StreamShutdown
	}
	fl.cancel(code)
}
