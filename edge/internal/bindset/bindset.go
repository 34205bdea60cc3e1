// Package bindset applies a new listener set to a component's sockets
// across a reload, for the TCP edge and the UDP forwarder alike: each
// address and port maps to the listener that serves it; Prepare binds the
// addresses and ports no socket serves yet (all or none); Commit keeps the
// sockets whose address and port stay, with their flows, and only their
// listener changes, adds the new ones and closes the removed ones; Abort
// closes what Prepare bound. What a component does with its flows, its
// routing tables and its loops stays with it.
package bindset

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/anyedge/anyedge/edge/flow"
)

// PortRange is an inclusive range of ports, the shape of edge.PortRange
// and udp.PortRange.
type PortRange = struct{ From, To uint16 }

// Expand lists every address of addrs on every port of ports.
func Expand[R ~PortRange](addrs []netip.Addr, ports []R) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range addrs {
		for _, r := range ports {
			pr := PortRange(r)
			for p := uint32(pr.From); p <= uint32(pr.To); p++ {
				out = append(out, netip.AddrPortFrom(a, uint16(p)))
			}
		}
	}
	return out
}

// Listener is a listener's compiled configuration as a reload sees it.
type Listener interface {
	// Key names the listener, in errors and logs.
	Key() string
	// AddrPorts lists the addresses and ports it listens on.
	AddrPorts() []netip.AddrPort
}

// Socket is one bound socket of a component, serving a listener
// configuration L. Serve and Remove are called under the lock that
// guards the component's sockets.
type Socket[L any] interface {
	io.Closer
	// String is the address bound, for logs.
	fmt.Stringer
	// AddrPort is the address and port the socket was bound for, as
	// configured (port 0: any).
	AddrPort() netip.AddrPort
	// Serve puts l in force on the socket: its next flow takes it.
	Serve(l L)
	// Remove marks the socket as removed by a reload, just before it is
	// closed.
	Remove()
}

// Plan maps each address and port to the configuration of the listener
// that serves it.
type Plan[L Listener] map[netip.AddrPort]L

// NewPlan maps the addresses and ports of each listener configuration of
// cfgs to it.
func NewPlan[L Listener](cfgs []L) (Plan[L], error) {
	p := Plan[L]{}
	for _, c := range cfgs {
		if err := p.Add(c); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Add gives the addresses and ports of l to l; one that another listener
// has is an error naming both.
func (p Plan[L]) Add(l L) error {
	for _, ap := range l.AddrPorts() {
		if prev, dup := p[ap]; dup {
			return fmt.Errorf("listeners %s and %s both listen on %s", prev.Key(), l.Key(), ap)
		}
		p[ap] = l
	}
	return nil
}

// Fresh returns, in order, the addresses and ports of p that have lacks:
// the sockets to bind.
func (p Plan[L]) Fresh(have map[netip.AddrPort]bool) []netip.AddrPort {
	var out []netip.AddrPort
	for ap := range p {
		if !have[ap] {
			out = append(out, ap)
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// Changes says what a reload's commit did to a component's sockets and
// flows.
type Changes struct {
	// Added and Removed are the sockets bound and closed.
	Added, Removed []netip.AddrPort
	// Cut counts the flows ended, by reason (flow.ListenerRemoved,
	// flow.EndpointRemoved).
	Cut map[flow.Reason]int
}

// Serving returns the addresses and ports socks serve; call it under the
// lock that guards them.
func Serving[L any, S Socket[L]](socks []S) map[netip.AddrPort]bool {
	have := make(map[netip.AddrPort]bool, len(socks))
	for _, s := range socks {
		have[s.AddrPort()] = true
	}
	return have
}

// Update is a change of a component's sockets, prepared and not yet in
// force: the plan of the new listeners and the sockets bound for the
// addresses and ports that are new. Prepare, Commit and Abort are called
// from one goroutine.
type Update[L Listener, S Socket[L]] struct {
	next  Plan[L]
	bound []S
	done  bool
}

// Prepare plans cfgs and, when open, binds with bind, in order, every
// address and port that have (Serving) lacks. On error nothing stays
// bound: a bind that fails closes what the others bound. A component that
// no longer takes sockets (closed) passes open false and binds nothing.
func Prepare[L Listener, S Socket[L]](cfgs []L, have map[netip.AddrPort]bool, open bool,
	bind func(netip.AddrPort, L) (S, error)) (*Update[L, S], error) {
	p, err := NewPlan(cfgs)
	if err != nil {
		return nil, err
	}
	u := &Update[L, S]{next: p}
	if !open {
		return u, nil
	}
	for _, ap := range p.Fresh(have) {
		s, err := bind(ap, p[ap])
		if err != nil {
			u.Abort()
			return nil, err
		}
		u.bound = append(u.bound, s)
	}
	return u, nil
}

// Done reports whether the update was committed or aborted.
func (u *Update[L, S]) Done() bool { return u.done }

// Commit puts the update in force on socks, the sockets in force, and
// returns the sockets in force from now on. Call it under the lock that
// guards socks. A socket whose address and port stay serves its new
// listener; the others are marked removed and closed; the sockets Prepare
// bound join and start (if start is not nil) when open, and are closed
// when not (the component closed meanwhile). Changes.Cut is empty, for
// the component to count the flows it cuts. After Commit or Abort, Commit
// returns socks and no changes.
func (u *Update[L, S]) Commit(socks []S, open bool, start func(S)) ([]S, Changes) {
	if u.done {
		return socks, Changes{}
	}
	u.done = true
	ch := Changes{Cut: map[flow.Reason]int{}}
	var next, removed []S
	for _, s := range socks {
		l, keep := u.next[s.AddrPort()]
		if !keep {
			s.Remove()
			removed = append(removed, s)
			ch.Removed = append(ch.Removed, s.AddrPort())
			continue
		}
		s.Serve(l)
		next = append(next, s)
	}
	for _, s := range u.bound {
		if !open {
			_ = s.Close()
			continue
		}
		next = append(next, s)
		ch.Added = append(ch.Added, s.AddrPort())
		if start != nil {
			start(s)
		}
	}
	closeAll(removed)
	return next, ch
}

// Abort drops the update and closes the sockets Prepare bound; after
// Commit or Abort it does nothing.
func (u *Update[L, S]) Abort() {
	if u.done {
		return
	}
	u.done = true
	closeAll(u.bound)
}

// Log logs what a Commit did, once the lock is released: one line per
// listener with the sockets bound for it (msg=listening listener=KEY
// protocol=PROTO addrs=[...]), one line per socket closed (msg="listener
// closed" protocol=PROTO addr=ADDR).
func (u *Update[L, S]) Log(log *slog.Logger, proto string, ch Changes) {
	var keys []string
	addrs := map[string][]string{}
	for _, s := range u.bound {
		k := u.next[s.AddrPort()].Key()
		if _, seen := addrs[k]; !seen {
			keys = append(keys, k)
		}
		addrs[k] = append(addrs[k], s.String())
	}
	for _, k := range keys {
		log.Info("listening", "listener", k, "protocol", proto, "addrs", addrs[k])
	}
	for _, ap := range ch.Removed {
		log.Info("listener closed", "protocol", proto, "addr", ap.String())
	}
}

func closeAll[S io.Closer](socks []S) {
	for _, s := range socks {
		_ = s.Close()
	}
}
