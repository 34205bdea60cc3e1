package udp

import (
	"fmt"
	"net/netip"

	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/internal/bindset"
	"github.com/anyedge/anyedge/edge/router"
)

// Update is a change of a Forwarder's listeners and regions (a hot
// reload), prepared and not yet in force: Prepare compiled the routing
// tables and bound the sockets that are new; Commit puts it in force,
// Abort drops it. A Forwarder has at most one Update pending, and
// Prepare, Commit and Abort are called from one goroutine.
type Update struct {
	f         *Forwarder
	listeners []Listener
	regions   Regions
	gates     *admit.GatesUpdate
	// set is the change of the forwarder's sockets: the plan of every
	// address and port of the new listeners, and the sockets bound for
	// new ones.
	set *bindset.Update[*boundListener, *socket]
}

// Changes says what a Commit did.
type Changes = bindset.Changes

// Prepare compiles listeners against regions, which must hold every
// region they route to, and binds the addresses and ports that no socket
// of the forwarder serves yet. Nothing changes for flows until Commit. On
// error nothing stays bound; a closed Forwarder binds nothing new.
func (f *Forwarder) Prepare(listeners []Listener, regions Regions) (*Update, error) {
	ls, err := checkListeners(listeners, regions)
	if err != nil {
		return nil, err
	}
	gates := f.gates.Prepare()
	bls, err := f.compile(ls, gates)
	if err != nil {
		return nil, err
	}
	f.smu.Lock()
	have, open := bindset.Serving(f.socks), !f.closed
	f.smu.Unlock()
	set, err := bindset.Prepare(bls, have, open, f.bind)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	return &Update{f: f, listeners: ls, regions: regions, gates: gates, set: set}, nil
}

// Key implements bindset.Listener.
func (bl *boundListener) Key() string { return bl.l.Route.Key }

// AddrPorts implements bindset.Listener.
func (bl *boundListener) AddrPorts() []netip.AddrPort { return bindset.Expand(bl.l.Addrs, bl.l.Ports) }

// Commit puts the update in force: every socket kept serves its new
// listener configuration (its flows stay), the new sockets start reading,
// the sockets of removed addresses and ports are closed. Flows of a
// closed socket end with flow.ListenerRemoved, flows to an endpoint their
// listener no longer routes to with flow.EndpointRemoved; every other
// flow goes on.
func (u *Update) Commit() Changes {
	if u.set.Done() {
		return Changes{}
	}
	f := u.f
	f.smu.Lock()
	u.gates.Commit()
	var start func(*socket)
	if ctx := f.runCtx; ctx != nil {
		start = func(s *socket) { f.readers.Go(func() { f.readLoop(ctx, s) }) }
	}
	var ch Changes
	f.socks, ch = u.set.Commit(f.socks, !f.closed, start)
	if f.runCtx != nil {
		old := *f.regions.Load()
		for name, c := range u.regions {
			if old[name] != c {
				c.HandleDatagrams(f.receive)
			}
		}
	}
	f.regions.Store(&u.regions)
	f.listeners.Store(&u.listeners)
	f.smu.Unlock()

	f.mu.RLock()
	var cut []*udpFlow
	var reasons []flow.Reason
	for _, fl := range f.flows {
		if r := fl.cutReason(); r != 0 {
			cut, reasons = append(cut, fl), append(reasons, r)
		}
	}
	f.mu.RUnlock()
	for i, fl := range cut {
		f.remove(fl, wire.StreamReset, reasons[i])
		ch.Cut[reasons[i]]++
	}
	u.set.Log(f.log, "udp", ch)
	return ch
}

// Abort drops a prepared update and closes the sockets it bound.
func (u *Update) Abort() { u.set.Abort() }

// cutReason says why a reload ends fl: its socket was closed, or its
// listener no longer routes to its endpoint; zero when it goes on.
func (fl *udpFlow) cutReason() flow.Reason {
	if fl.sock.removed.Load() {
		return flow.ListenerRemoved
	}
	fl.mu.Lock()
	choice := fl.choice
	fl.mu.Unlock()
	choice.FailOpen = false
	if choice != (router.Choice{}) && !fl.sock.cur.Load().serves[choice] {
		return flow.EndpointRemoved
	}
	return 0
}
