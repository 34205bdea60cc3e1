package udp

import (
	"fmt"
	"maps"
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
	bls       []*boundListener // one per listener
	next      bindset.Plan[*boundListener]
	bound     []*socket
	done      bool
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
	f.smu.Lock()
	gates := maps.Clone(f.gates)
	f.smu.Unlock()
	bls, err := f.compile(ls, gates)
	if err != nil {
		return nil, err
	}
	u := &Update{f: f, listeners: ls, regions: regions, bls: bls}
	if u.next, err = bindset.NewPlan(bls, listenerAddrs, listenerKey); err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	f.smu.Lock()
	have := map[netip.AddrPort]bool{}
	for _, s := range f.socks {
		have[s.addr] = true
	}
	closed := f.closed
	f.smu.Unlock()
	if closed {
		return u, nil
	}
	if u.bound, err = bindset.Bind(u.next, have, f.bind); err != nil {
		return nil, err
	}
	return u, nil
}

func listenerKey(bl *boundListener) string { return bl.l.Route.Key }

func listenerAddrs(bl *boundListener) []netip.AddrPort { return bindset.Expand(bl.l.Addrs, bl.l.Ports) }

// Commit puts the update in force: every socket kept serves its new
// listener configuration (its flows stay), the new sockets start reading,
// the sockets of removed addresses and ports are closed. Flows of a
// closed socket end with flow.ListenerRemoved, flows to an endpoint their
// listener no longer routes to with flow.EndpointRemoved; every other
// flow goes on.
func (u *Update) Commit() Changes {
	if u.done {
		return Changes{}
	}
	u.done = true
	f := u.f
	ch := Changes{Cut: map[flow.Reason]int{}}
	f.smu.Lock()
	f.gates = gatesOf(u.bls)
	var socks, removed []*socket
	for _, s := range f.socks {
		bl, keep := u.next[s.addr]
		if !keep {
			s.removed.Store(true)
			removed = append(removed, s)
			ch.Removed = append(ch.Removed, s.addr)
			continue
		}
		s.cur.Store(bl)
		socks = append(socks, s)
	}
	for _, s := range u.bound {
		if f.closed {
			_ = s.conn.Close()
			continue
		}
		socks = append(socks, s)
		ch.Added = append(ch.Added, s.addr)
		if ctx := f.runCtx; ctx != nil {
			f.readers.Go(func() { f.readLoop(ctx, s) })
		}
	}
	f.socks = socks
	closeSockets(removed)
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
	bindset.LogBound(f.log, "udp", u.bound, func(s *socket) string { return listenerKey(s.cur.Load()) },
		func(s *socket) string { return s.local.String() })
	for _, ap := range ch.Removed {
		f.log.Info("listener closed", "protocol", "udp", "addr", ap.String())
	}
	return ch
}

// gatesOf puts each listener's admission rules in force on its gate
// (kept or new) and returns the gates by listener key.
func gatesOf(bls []*boundListener) map[string]*admit.Gate {
	gates := make(map[string]*admit.Gate, len(bls))
	for _, bl := range bls {
		bl.gate.SetRules(bl.l.Admission)
		gates[bl.l.Route.Key] = bl.gate
	}
	return gates
}

// Abort drops a prepared update and closes the sockets it bound.
func (u *Update) Abort() {
	if u.done {
		return
	}
	u.done = true
	closeSockets(u.bound)
}

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
