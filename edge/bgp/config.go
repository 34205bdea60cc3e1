// Package bgp is the embedded BGP speaker of an edge: it announces the
// anycast prefixes of the accelerators the edge is ready to serve to the
// PoP's routers, withdraws them when it cannot serve, and marks them with the
// GRACEFUL_SHUTDOWN community (RFC 8326) while the edge drains.
//
// The speaker runs GoBGP in process. It is the only package of anyedge that
// imports GoBGP.
package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Defaults applied by New to zero fields.
const (
	DefaultHoldTime     = 9 * time.Second
	DefaultKeepalive    = 3 * time.Second
	DefaultHoldDown     = 2 * time.Second
	DefaultConnectRetry = 5 * time.Second
)

// CommunityGracefulShutdown is the well-known GRACEFUL_SHUTDOWN community
// 65535:0 of RFC 8326.
const CommunityGracefulShutdown uint32 = 0xFFFF0000

// Neighbor is one BGP peer (usually a PoP router). Every session carries both
// the IPv4 and the IPv6 unicast families.
type Neighbor struct {
	// Address of the peer.
	Address netip.Addr
	// PeerASN is the AS number the peer must present; equal to the local
	// ASN means iBGP.
	PeerASN uint32
	// HoldTime proposed in OPEN, whole seconds, 0 → 9s; 3s–65535s
	// (CheckHoldTime).
	HoldTime time.Duration
	// Keepalive interval, whole seconds, 0 → 3s; less than HoldTime
	// (CheckKeepalive).
	Keepalive time.Duration
	// Password enables TCP MD5 signatures (RFC 2385) when not empty.
	Password string
	// Multihop is the TTL of an eBGP multihop session; 0 means directly
	// connected (TTL 1).
	Multihop uint8
	// TTLSecurity turns on the Generalized TTL Security Mechanism (RFC
	// 5082) for a directly connected neighbour: packets leave with TTL 255
	// and the kernel drops the session's packets that arrive with less, so
	// nobody more than one hop away can inject into the session. The
	// router must do the same (BIRD: ttl security on). Not with Multihop.
	TTLSecurity bool
	// Passive waits for the peer to connect instead of dialling it; it needs
	// Config.ListenPort.
	Passive bool
	// LocalAddress is the source address of the session; zero lets the
	// kernel choose.
	LocalAddress netip.Addr
}

// Config configures a Speaker. Zero fields take the documented defaults.
type Config struct {
	// LocalASN is the edge's AS number (required; CheckASN).
	LocalASN uint32
	// RouterID is an IPv4 address identifying the speaker (required).
	RouterID netip.Addr
	// ListenPort accepts incoming sessions on all addresses when > 0; 0 means
	// the speaker only dials out.
	ListenPort int
	// Neighbors are the peers to announce to.
	Neighbors []Neighbor
	// Communities attached to every announcement, each (asn<<16 | value).
	Communities []uint32
	// LargeCommunities attached to every announcement (RFC 8092).
	LargeCommunities [][3]uint32
	// MED of every announcement.
	MED uint32
	// ASPathPrepend adds the local ASN this many extra times to the AS path
	// (0–MaxASPathPrepend). eBGP only: an iBGP neighbour would see its own
	// AS.
	ASPathPrepend int
	// HoldDown is the minimum time between withdrawing a prefix and
	// announcing it again, 0 → 2s. Withdrawals are never delayed.
	HoldDown time.Duration
	// ConnectRetry is the time between attempts to dial a neighbour,
	// 0 → 5s.
	ConnectRetry time.Duration
	// NextHop4 is the next hop of IPv4 announcements; zero means the local
	// address of each session (next-hop-self).
	NextHop4 netip.Addr
	// NextHop6 is the next hop of IPv6 announcements; zero means the local
	// address of each session, which over an IPv4 session is the
	// IPv4-mapped IPv6 address (::ffff:a.b.c.d); BIRD 2 drops such routes
	// as invalid. Set it to the edge's IPv6 address on the router link when
	// IPv6 prefixes ride an IPv4 session.
	NextHop6 netip.Addr
}

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.HoldDown == 0 {
		c.HoldDown = DefaultHoldDown
	}
	if c.ConnectRetry == 0 {
		c.ConnectRetry = DefaultConnectRetry
	}
	ns := make([]Neighbor, len(c.Neighbors))
	for i, n := range c.Neighbors {
		if n.HoldTime == 0 {
			n.HoldTime = DefaultHoldTime
		}
		if n.Keepalive == 0 {
			n.Keepalive = DefaultKeepalive
		}
		ns[i] = n
	}
	c.Neighbors = ns
	c.Communities = append([]uint32(nil), c.Communities...)
	c.LargeCommunities = append([][3]uint32(nil), c.LargeCommunities...)
	return c
}

// Problem is one rule a Config breaks. Field names the key as the config
// document spells it, relative to a PoP's bgp section
// ("neighbors[1].hold_time"); Msg says what is wrong.
type Problem struct {
	Field, Msg string
}

// Error returns "field: msg".
func (p Problem) Error() string { return p.Field + ": " + p.Msg }

// Check reports every rule c breaks once its defaults are applied. New
// refuses a Config with any; the config validator calls Check too, so that
// a document it accepts is one the speaker starts with.
func (c Config) Check() []Problem {
	c = c.withDefaults()
	var ps []Problem
	add := func(field string, err error) {
		if err != nil {
			ps = append(ps, Problem{Field: field, Msg: err.Error()})
		}
	}
	add("local_asn", CheckASN(c.LocalASN))
	if !c.RouterID.Is4() {
		add("router_id", fmt.Errorf("%s is not an IPv4 address", describeAddr(c.RouterID)))
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		add("listen_port", fmt.Errorf("%d is outside 0–65535", c.ListenPort))
	}
	if c.ASPathPrepend < 0 || c.ASPathPrepend > MaxASPathPrepend {
		add("as_path_prepend", fmt.Errorf("%d is outside 0–%d", c.ASPathPrepend, MaxASPathPrepend))
	}
	if c.HoldDown < 0 {
		add("hold_down", fmt.Errorf("%s is negative", c.HoldDown))
	}
	if c.ConnectRetry < time.Second {
		add("connect_retry", fmt.Errorf("%s is below 1s", c.ConnectRetry))
	}
	if c.NextHop4.IsValid() && !c.NextHop4.Is4() {
		add("next_hop_ipv4", fmt.Errorf("%s is not an IPv4 address", c.NextHop4))
	}
	if c.NextHop6.IsValid() && (!c.NextHop6.Is6() || c.NextHop6.Is4In6()) {
		add("next_hop_ipv6", fmt.Errorf("%s is not an IPv6 address", c.NextHop6))
	}
	first := make(map[netip.Addr]int)
	for i, n := range c.Neighbors {
		p := fmt.Sprintf("neighbors[%d]", i)
		if !n.Address.IsValid() {
			add(p+".address", errors.New("required (an IP address)"))
		} else if j, dup := first[n.Address.Unmap()]; dup {
			add(p+".address", fmt.Errorf("%s is also neighbors[%d]", n.Address, j))
		} else {
			first[n.Address.Unmap()] = i
		}
		add(p+".peer_asn", CheckASN(n.PeerASN))
		if n.PeerASN == c.LocalASN && c.ASPathPrepend > 0 {
			add(p+".peer_asn", fmt.Errorf("%d is the local ASN (iBGP), and as_path_prepend %d cannot be used with an iBGP neighbor", n.PeerASN, c.ASPathPrepend))
		}
		if err := CheckHoldTime(n.HoldTime); err != nil {
			add(p+".hold_time", err)
		} else {
			add(p+".keepalive", CheckKeepalive(n.Keepalive, n.HoldTime))
		}
		if n.TTLSecurity && n.Multihop > 0 {
			add(p+".ttl_security", fmt.Errorf("only for a directly connected neighbor (multihop 0), not with multihop %d", n.Multihop))
		}
		if n.Passive && c.ListenPort == 0 {
			add(p+".passive", errors.New("a passive neighbor needs listen_port (the speaker does not listen without it)"))
		}
		if n.LocalAddress.IsValid() && n.Address.IsValid() && n.LocalAddress.Unmap().Is4() != n.Address.Unmap().Is4() {
			add(p+".local_address", fmt.Errorf("%s is not of the neighbor's address family (%s)", n.LocalAddress, n.Address))
		}
	}
	return ps
}

// validate returns the problems of Check as one error.
func (c Config) validate() error {
	var errs []error
	for _, p := range c.Check() {
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

// describeAddr quotes an address for a message; the zero Addr is "none".
func describeAddr(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}
