package bgp

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// PeerStatus is the state of one neighbour.
type PeerStatus struct {
	// Address of the neighbour.
	Address netip.Addr
	// State of the BGP session: idle, connect, active, opensent,
	// openconfirm or established.
	State string
	// Uptime is how long the session has been established; 0 otherwise.
	Uptime time.Duration
	// PrefixesAdvertised to the neighbour (both families).
	PrefixesAdvertised int
	// LastError is the latest reason the session failed or was refused,
	// such as a NOTIFICATION sent or received; empty if none yet.
	LastError string
	// LastErrorAt is when LastError was recorded.
	LastErrorAt time.Time
}

// peerState is what the speaker tracks per neighbour; guarded by
// Speaker.mu.
type peerState struct {
	state       string
	since       time.Time // when state was entered
	lastError   string
	lastErrorAt time.Time
}

func (p *peerState) setState(state string, now time.Time) bool {
	if p.state == state {
		return false
	}
	p.state, p.since = state, now
	return true
}

// onEvent handles GoBGP's peer events: it logs and records state changes.
func (s *Speaker) onEvent(r *api.WatchEventResponse) {
	ev := r.GetPeer()
	if ev == nil || ev.Peer == nil || ev.Peer.State == nil {
		return
	}
	if ev.Type != api.WatchEventResponse_PeerEvent_STATE && ev.Type != api.WatchEventResponse_PeerEvent_INIT {
		return
	}
	addr, err := netip.ParseAddr(ev.Peer.State.NeighborAddress)
	if err != nil {
		return
	}
	addr = addr.Unmap()
	state := sessionState(ev.Peer.State.SessionState)
	now := time.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	p, ok := s.peers[addr]
	if !ok {
		return
	}
	old, since := p.state, p.since
	if !p.setState(state, now) {
		return
	}
	log := s.log.With("peer", addr, "from", old, "to", state)
	switch {
	case state == "established":
		log.Info("bgp session established")
	case old == "established":
		log.Warn("bgp session lost", "uptime", now.Sub(since).Round(time.Millisecond), "last_error", p.lastError)
	default:
		log.Debug("bgp session state")
	}
}

// recordError stores the reason a session failed; called from GoBGP's log
// messages with the neighbour address as GoBGP prints it.
func (s *Speaker) recordError(peer, reason string) {
	addr, err := netip.ParseAddr(peer)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peers[addr.Unmap()]
	if !ok {
		return
	}
	if p.lastError != reason {
		s.log.Info("bgp session error", "peer", addr.Unmap(), "reason", reason)
	}
	p.lastError, p.lastErrorAt = reason, time.Now()
}

func sessionState(st api.PeerState_SessionState) string {
	if st == api.PeerState_UNKNOWN {
		return "idle"
	}
	return strings.ToLower(st.String())
}

// Peers returns the status of every configured neighbour, sorted by address.
func (s *Speaker) Peers() []PeerStatus {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	advertised := make(map[netip.Addr]int)
	if srv != nil {
		// ListPeer goes through GoBGP's main loop, which never exits, so this
		// cannot block forever even if Run is returning.
		_ = srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			if p.Conf == nil {
				return
			}
			a, err := netip.ParseAddr(p.Conf.NeighborAddress)
			if err != nil {
				return
			}
			n := 0
			for _, af := range p.AfiSafis {
				if af.State != nil {
					n += int(af.State.Advertised)
				}
			}
			advertised[a.Unmap()] = n
		})
	}

	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerStatus, 0, len(s.peers))
	for a, p := range s.peers {
		st := PeerStatus{Address: a, State: p.state, LastError: p.lastError, LastErrorAt: p.lastErrorAt}
		if p.state == "established" {
			st.Uptime = now.Sub(p.since)
			st.PrefixesAdvertised = advertised[a]
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return out
}

// peerConfig is the GoBGP neighbour configuration of n.
func (s *Speaker) peerConfig(n Neighbor) *api.Peer {
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: n.Address.Unmap().String(),
			PeerAsn:         n.PeerASN,
			AuthPassword:    n.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      uint64(s.cfg.ConnectRetry / time.Second),
			HoldTime:          uint64(n.HoldTime / time.Second),
			KeepaliveInterval: uint64(n.Keepalive / time.Second),
		}},
		Transport: &api.Transport{PassiveMode: n.Passive},
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: familyIPv4, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: familyIPv6, Enabled: true}},
		},
	}
	if n.LocalAddress.IsValid() {
		p.Transport.LocalAddress = n.LocalAddress.Unmap().String()
	}
	if n.Multihop > 0 {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(n.Multihop)}
	}
	if n.TTLSecurity {
		p.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: 255}
	}
	return p
}
