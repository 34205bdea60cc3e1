package bgp

import (
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// attributes are the path attributes shared by every announcement.
type attributes struct {
	localASN    uint32
	prepend     int
	med         uint32
	communities []uint32
	large       [][3]uint32
	nextHop4    netip.Addr
	nextHop6    netip.Addr
}

func attributesOf(c Config) attributes {
	return attributes{
		localASN:    c.LocalASN,
		prepend:     c.ASPathPrepend,
		med:         c.MED,
		communities: c.Communities,
		large:       c.LargeCommunities,
		nextHop4:    c.NextHop4,
		nextHop6:    c.NextHop6,
	}
}

// normalize returns p masked, with an IPv4-mapped address turned into IPv4,
// and whether it is announceable.
func normalize(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	a := p.Addr()
	if a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

func familyOf(p netip.Prefix) *api.Family {
	if p.Addr().Is4() {
		return familyIPv4
	}
	return familyIPv6
}

func nlriOf(p netip.Prefix) (*anypb.Any, error) {
	return anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
}

// announcement builds the path that announces p; graceful adds the
// GRACEFUL_SHUTDOWN community.
func (a attributes) announcement(p netip.Prefix, graceful bool) (*api.Path, error) {
	nlri, err := nlriOf(p)
	if err != nil {
		return nil, fmt.Errorf("encode nlri %s: %w", p, err)
	}
	msgs := []proto.Message{&api.OriginAttribute{Origin: 0}} // IGP
	if p.Addr().Is4() {
		nh := "0.0.0.0"
		if a.nextHop4.IsValid() {
			nh = a.nextHop4.String()
		}
		msgs = append(msgs, &api.NextHopAttribute{NextHop: nh})
	} else {
		nh := "::"
		if a.nextHop6.IsValid() {
			nh = a.nextHop6.String()
		}
		msgs = append(msgs, &api.MpReachNLRIAttribute{Family: familyIPv6, NextHops: []string{nh}, Nlris: []*anypb.Any{nlri}})
	}
	if a.prepend > 0 {
		asns := make([]uint32, a.prepend)
		for i := range asns {
			asns[i] = a.localASN
		}
		// GoBGP puts the local ASN once more in front on every eBGP session.
		msgs = append(msgs, &api.AsPathAttribute{Segments: []*api.AsSegment{{Type: api.AsSegment_AS_SEQUENCE, Numbers: asns}}})
	}
	msgs = append(msgs, &api.MultiExitDiscAttribute{Med: a.med})
	comms := append([]uint32(nil), a.communities...)
	if graceful {
		comms = append(comms, CommunityGracefulShutdown)
	}
	if len(comms) > 0 {
		msgs = append(msgs, &api.CommunitiesAttribute{Communities: comms})
	}
	if len(a.large) > 0 {
		lc := make([]*api.LargeCommunity, len(a.large))
		for i, l := range a.large {
			lc[i] = &api.LargeCommunity{GlobalAdmin: l[0], LocalData1: l[1], LocalData2: l[2]}
		}
		msgs = append(msgs, &api.LargeCommunitiesAttribute{Communities: lc})
	}
	attrs := make([]*anypb.Any, len(msgs))
	for i, m := range msgs {
		if attrs[i], err = anypb.New(m); err != nil {
			return nil, fmt.Errorf("encode path attribute: %w", err)
		}
	}
	return &api.Path{Family: familyOf(p), Nlri: nlri, Pattrs: attrs}, nil
}

// withdrawal builds the path that withdraws p.
func withdrawal(p netip.Prefix) (*api.Path, error) {
	nlri, err := nlriOf(p)
	if err != nil {
		return nil, fmt.Errorf("encode nlri %s: %w", p, err)
	}
	return &api.Path{Family: familyOf(p), Nlri: nlri, IsWithdraw: true}, nil
}
