package config

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/anyedge/anyedge/edge/bgp"
)

// Speaker maps a PoP's bgp section onto the BGP speaker's own Config. The
// rules of that Config are edge/bgp's (bgp.Config.Check), which Validate
// applies with document paths: Speaker fails only on a section that
// Validate refuses.
func (b *BGP) Speaker() (bgp.Config, error) {
	var ps problems
	c := b.speaker("bgp", &ps)
	for _, p := range c.Check() {
		ps.add("bgp."+p.Field, "%s", p.Msg)
	}
	return c, ps.err()
}

// speaker maps b, reporting what has no place in bgp.Config (text that is
// not an address or a community, numbers out of the field's range) at
// paths under p.
func (b *BGP) speaker(p string, ps *problems) bgp.Config {
	c := bgp.Config{
		LocalASN: b.LocalASN, ListenPort: b.ListenPort, MED: b.MED,
		ASPathPrepend: b.ASPathPrepend, HoldDown: b.HoldDown,
	}
	addr := func(path, s, what string) netip.Addr {
		if s == "" {
			if what != "" {
				ps.add(path, "required (%s)", what)
			}
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			ps.add(path, "%q is not an IP address", s)
		}
		return a
	}
	c.RouterID = addr(p+".router_id", b.RouterID, "an IPv4 address")
	c.NextHop4 = addr(p+".next_hop_ipv4", b.NextHopIPv4, "")
	c.NextHop6 = addr(p+".next_hop_ipv6", b.NextHopIPv6, "")
	for i, s := range b.Communities {
		v, err := bgp.ParseCommunity(s)
		if err != nil {
			ps.add(fmt.Sprintf("%s.communities[%d]", p, i), "%v", err)
		}
		c.Communities = append(c.Communities, v)
	}
	for i, s := range b.LargeCommunities {
		v, err := bgp.ParseLargeCommunity(s)
		if err != nil {
			ps.add(fmt.Sprintf("%s.large_communities[%d]", p, i), "%v", err)
		}
		c.LargeCommunities = append(c.LargeCommunities, v)
	}
	for i, n := range b.Neighbors {
		np := fmt.Sprintf("%s.neighbors[%d]", p, i)
		nb := bgp.Neighbor{
			Address: addr(np+".address", n.Address, "an IP address"), PeerASN: n.PeerASN,
			HoldTime: n.HoldTime, Keepalive: n.Keepalive, Password: n.Password,
			TTLSecurity: n.TTLSecurity, Passive: n.Passive,
			LocalAddress: addr(np+".local_address", n.LocalAddress, ""),
		}
		if n.Multihop < 0 || n.Multihop > 255 {
			ps.add(np+".multihop", "%d is outside 0–255", n.Multihop)
		} else {
			nb.Multihop = uint8(n.Multihop)
		}
		c.Neighbors = append(c.Neighbors, nb)
	}
	return c
}

// bgp checks a PoP's bgp section: what maps onto the speaker's Config, then
// the speaker's own rules, each problem once.
func (v *validator) bgp(p string, b *BGP) {
	var mapped problems
	c := b.speaker(p, &mapped)
	for _, pr := range mapped.list {
		v.add(pr.Path, "%s", pr.Msg)
	}
	for _, pr := range c.Check() {
		path := p + "." + pr.Field
		if !slices.ContainsFunc(mapped.list, func(m Problem) bool { return m.Path == path }) {
			v.add(path, "%s", pr.Msg)
		}
	}
}
