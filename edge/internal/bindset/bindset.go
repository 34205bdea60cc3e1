// Package bindset plans the sockets of a listener set across a reload,
// for the TCP edge and the UDP forwarder alike: each address and port maps
// to the listener that serves it, and the sockets to bind are the
// addresses and ports no socket serves yet. A socket whose address and port
// stay is kept, with its flows, and only its listener changes.
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

// Plan maps each address and port to the configuration of the listener
// that serves it.
type Plan[L any] map[netip.AddrPort]L

// Add gives aps to l; an address and port that another listener has is an
// error naming both (by name).
func (p Plan[L]) Add(aps []netip.AddrPort, l L, name func(L) string) error {
	for _, ap := range aps {
		if prev, dup := p[ap]; dup {
			return fmt.Errorf("listeners %s and %s both listen on %s", name(prev), name(l), ap)
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

// NewPlan maps the addresses and ports of each listener configuration of
// cfgs (aps says which) to it.
func NewPlan[L any](cfgs []L, aps func(L) []netip.AddrPort, name func(L) string) (Plan[L], error) {
	p := Plan[L]{}
	for _, c := range cfgs {
		if err := p.Add(aps(c), c, name); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Bind binds with bind, in order, every address and port of p that have
// lacks. On error it closes what it bound.
func Bind[L any, S io.Closer](p Plan[L], have map[netip.AddrPort]bool, bind func(netip.AddrPort, L) (S, error)) ([]S, error) {
	var out []S
	for _, ap := range p.Fresh(have) {
		s, err := bind(ap, p[ap])
		if err != nil {
			for _, s := range out {
				_ = s.Close()
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// LogBound logs the sockets bound, one line per listener (key) with the
// bound addresses: msg=listening listener=KEY protocol=PROTO addrs=[...].
func LogBound[S any](log *slog.Logger, proto string, socks []S, key func(S) string, addr func(S) string) {
	var keys []string
	addrs := map[string][]string{}
	for _, s := range socks {
		k := key(s)
		if _, seen := addrs[k]; !seen {
			keys = append(keys, k)
		}
		addrs[k] = append(addrs[k], addr(s))
	}
	for _, k := range keys {
		log.Info("listening", "listener", k, "protocol", proto, "addrs", addrs[k])
	}
}
