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
	// HoldTime proposed in OPEN, whole seconds, 0 → 9s; at least 3s.
	HoldTime time.Duration
	// Keepalive interval, whole seconds, 0 → 3s; less than HoldTime.
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
	// LocalASN is the edge's AS number (required).
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
	// (0–16). eBGP only: an iBGP neighbour would see its own AS.
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

// validate reports every problem of a defaulted config.
func (c Config) validate() error {
	var errs []error
	if c.LocalASN == 0 {
		errs = append(errs, errors.New("local_asn: required"))
	}
	if !c.RouterID.Is4() {
		errs = append(errs, fmt.Errorf("router_id: %q is not an IPv4 address", c.RouterID))
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen_port: %d out of range 0-65535", c.ListenPort))
	}
	if c.ASPathPrepend < 0 || c.ASPathPrepend > 16 {
		errs = append(errs, fmt.Errorf("as_path_prepend: %d out of range 0-16", c.ASPathPrepend))
	}
	if c.HoldDown < 0 {
		errs = append(errs, errors.New("hold_down: negative"))
	}
	if c.ConnectRetry < time.Second {
		errs = append(errs, errors.New("connect_retry: less than 1s"))
	}
	if c.NextHop4.IsValid() && !c.NextHop4.Is4() {
		errs = append(errs, fmt.Errorf("next_hop4: %s is not IPv4", c.NextHop4))
	}
	if c.NextHop6.IsValid() && (!c.NextHop6.Is6() || c.NextHop6.Is4In6()) {
		errs = append(errs, fmt.Errorf("next_hop6: %s is not IPv6", c.NextHop6))
	}
	seen := make(map[netip.Addr]bool)
	for i, n := range c.Neighbors {
		p := fmt.Sprintf("neighbors[%d]", i)
		if !n.Address.IsValid() {
			errs = append(errs, fmt.Errorf("%s.address: required", p))
		} else if seen[n.Address.Unmap()] {
			errs = append(errs, fmt.Errorf("%s.address: duplicate %s", p, n.Address))
		}
		seen[n.Address.Unmap()] = true
		if n.PeerASN == 0 {
			errs = append(errs, fmt.Errorf("%s.peer_asn: required", p))
		}
		if n.PeerASN == c.LocalASN && c.ASPathPrepend > 0 {
			errs = append(errs, fmt.Errorf("%s: as_path_prepend cannot be used with an iBGP neighbour", p))
		}
		if n.HoldTime < 3*time.Second || n.HoldTime%time.Second != 0 {
			errs = append(errs, fmt.Errorf("%s.hold_time: %s is not whole seconds >= 3s", p, n.HoldTime))
		}
		if n.Keepalive < time.Second || n.Keepalive%time.Second != 0 || n.Keepalive >= n.HoldTime {
			errs = append(errs, fmt.Errorf("%s.keepalive: %s is not whole seconds >= 1s and below hold_time", p, n.Keepalive))
		}
		if n.TTLSecurity && n.Multihop > 0 {
			errs = append(errs, fmt.Errorf("%s.ttl_security: only for directly connected neighbours (multihop 0)", p))
		}
		if n.Passive && c.ListenPort == 0 {
			errs = append(errs, fmt.Errorf("%s.passive: needs listen_port", p))
		}
		if n.LocalAddress.IsValid() && n.LocalAddress.Is4() != n.Address.Unmap().Is4() {
			errs = append(errs, fmt.Errorf("%s.local_address: %s is not of the neighbour's family", p, n.LocalAddress))
		}
	}
	return errors.Join(errs...)
}
