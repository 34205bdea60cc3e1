package bgp

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/stretchr/testify/require"
)

func validConfig() Config {
	return Config{
		LocalASN: 65001,
		RouterID: netip.MustParseAddr("198.18.0.1"),
		Neighbors: []Neighbor{{
			Address: netip.MustParseAddr("198.18.0.2"),
			PeerASN: 65000,
		}},
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error; "" means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no asn", func(c *Config) { c.LocalASN = 0 }, "local_asn: 0 is not a valid AS number"},
		{"as_trans", func(c *Config) { c.LocalASN = 23456 }, "local_asn: 23456 is AS_TRANS"},
		{"reserved peer asn", func(c *Config) { c.Neighbors[0].PeerASN = 65535 }, "neighbors[0].peer_asn: 65535 is a reserved AS number"},
		{"v6 router id", func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") }, "router_id"},
		{"bad port", func(c *Config) { c.ListenPort = 70000 }, "listen_port"},
		{"prepend", func(c *Config) { c.ASPathPrepend = 11 }, "as_path_prepend: 11 is outside 0–10"},
		{"ibgp prepend", func(c *Config) { c.ASPathPrepend = 1; c.Neighbors[0].PeerASN = 65001 }, "iBGP"},
		{"hold time", func(c *Config) { c.Neighbors[0].HoldTime = 2 * time.Second }, "hold_time: 2s is below 3s"},
		{"hold time not whole seconds", func(c *Config) { c.Neighbors[0].HoldTime = 3500 * time.Millisecond }, "hold_time: 3.5s is not a whole number of seconds"},
		{"hold time too long", func(c *Config) { c.Neighbors[0].HoldTime = 65536 * time.Second }, "hold_time: 18h12m16s is above 65535s"},
		{"keepalive", func(c *Config) { c.Neighbors[0].HoldTime = 3 * time.Second; c.Neighbors[0].Keepalive = 3 * time.Second }, "keepalive"},
		{"passive without listen", func(c *Config) { c.Neighbors[0].Passive = true }, "passive"},
		{"ttl security with multihop", func(c *Config) { c.Neighbors[0].TTLSecurity, c.Neighbors[0].Multihop = true, 2 }, "ttl_security"},
		{"duplicate", func(c *Config) { c.Neighbors = append(c.Neighbors, c.Neighbors[0]) }, "neighbors[1].address: 198.18.0.2 is also neighbors[0]"},
		{"no peer asn", func(c *Config) { c.Neighbors[0].PeerASN = 0 }, "peer_asn"},
		{"next hop 6", func(c *Config) { c.NextHop6 = netip.MustParseAddr("198.18.0.1") }, "next_hop_ipv6: 198.18.0.1 is not an IPv6 address"},
		{"local address family", func(c *Config) { c.Neighbors[0].LocalAddress = netip.MustParseAddr("2001:db8::1") }, "local_address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(&c)
			_, err := New(c, nil)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestAnnouncementAttributes(t *testing.T) {
	a := attributes{
		localASN:    65001,
		prepend:     2,
		med:         50,
		communities: []uint32{65001<<16 | 100},
		large:       [][3]uint32{{65001, 1, 2}},
		nextHop6:    netip.MustParseAddr("2001:db8:ffff::1"),
	}
	tests := []struct {
		prefix   string
		graceful bool
		family   *api.Family
		nextHop  string
		comms    []uint32
	}{
		{"203.0.113.0/24", false, familyIPv4, "0.0.0.0", []uint32{65001<<16 | 100}},
		{"203.0.113.0/24", true, familyIPv4, "0.0.0.0", []uint32{65001<<16 | 100, CommunityGracefulShutdown}},
		{"2001:db8:1::/48", false, familyIPv6, "2001:db8:ffff::1", []uint32{65001<<16 | 100}},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			p, err := a.announcement(netip.MustParsePrefix(tt.prefix), tt.graceful)
			require.NoError(t, err)
			require.Equal(t, tt.family, p.Family)
			var nlri api.IPAddressPrefix
			require.NoError(t, p.Nlri.UnmarshalTo(&nlri))
			require.Equal(t, tt.prefix, netip.PrefixFrom(netip.MustParseAddr(nlri.Prefix), int(nlri.PrefixLen)).String())
			var got struct {
				nextHop string
				asPath  []uint32
				med     uint32
				comms   []uint32
				large   int
			}
			for _, at := range p.Pattrs {
				m, err := at.UnmarshalNew()
				require.NoError(t, err)
				switch v := m.(type) {
				case *api.NextHopAttribute:
					got.nextHop = v.NextHop
				case *api.MpReachNLRIAttribute:
					got.nextHop = v.NextHops[0]
				case *api.AsPathAttribute:
					got.asPath = v.Segments[0].Numbers
				case *api.MultiExitDiscAttribute:
					got.med = v.Med
				case *api.CommunitiesAttribute:
					got.comms = v.Communities
				case *api.LargeCommunitiesAttribute:
					got.large = len(v.Communities)
				}
			}
			require.Equal(t, tt.nextHop, got.nextHop)
			require.Equal(t, []uint32{65001, 65001}, got.asPath)
			require.Equal(t, uint32(50), got.med)
			require.Equal(t, tt.comms, got.comms)
			require.Equal(t, 1, got.large)
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		in   netip.Prefix
		want string
		ok   bool
	}{
		{netip.MustParsePrefix("203.0.113.7/24"), "203.0.113.0/24", true},
		{netip.MustParsePrefix("::ffff:203.0.113.0/120"), "203.0.113.0/24", true},
		{netip.MustParsePrefix("2001:db8:1::1/48"), "2001:db8:1::/48", true},
		{netip.Prefix{}, "", false},
	}
	for _, tt := range tests {
		got, ok := normalize(tt.in)
		require.Equal(t, tt.ok, ok, tt.in)
		if ok {
			require.Equal(t, tt.want, got.String())
		}
	}
}

func TestFailureReason(t *testing.T) {
	tests := []struct {
		msg    string
		level  slog.Level
		fields gobgplog.Fields
		want   string
	}{
		{"sent notification", slog.LevelWarn, gobgplog.Fields{"Data": bgp.NewMessageError(bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_BAD_PEER_AS, nil, "as number mismatch")},
			"sent notification: code 2(open) subcode 2(bad peer as) (as number mismatch)"},
		{"received notification", slog.LevelWarn, gobgplog.Fields{"Code": uint8(6), "Subcode": uint8(2), "Communicated-Reason": "bye"},
			"received notification: code 6(cease) subcode 2(administrative shutdown) (bye)"},
		{"Peer Down", slog.LevelInfo, gobgplog.Fields{"Reason": "hold-timer-expired"}, "peer down: hold-timer-expired"},
		{"Peer Down", slog.LevelInfo, gobgplog.Fields{"Reason": "dying"}, ""},
		{"state changed", slog.LevelDebug, gobgplog.Fields{"new": "BGP_FSM_IDLE", "reason": "read-failed"}, "session reset: read-failed"},
		{"state changed", slog.LevelDebug, gobgplog.Fields{"new": "BGP_FSM_IDLE", "reason": "notification-sent code 2"}, ""},
		{"state changed", slog.LevelDebug, gobgplog.Fields{"new": "BGP_FSM_ACTIVE", "reason": "read-failed"}, ""},
		{"failed to connect", slog.LevelDebug, gobgplog.Fields{"Error": errors.New("refused")}, "connect: refused"},
		{"Peer Up", slog.LevelInfo, gobgplog.Fields{}, ""},
		{"something odd", slog.LevelWarn, gobgplog.Fields{"Error": "x"}, "something odd: x"},
		{"Closed an accepted connection", slog.LevelWarn, gobgplog.Fields{"State": "x"}, ""},
		{"state changed", slog.LevelDebug, gobgplog.Fields{"new": "BGP_FSM_IDLE", "reason": "invalid-msg"}, ""},
	}
	for _, tt := range tests {
		got := failureReason(tt.level, tt.msg, tt.fields)
		require.Equal(t, strings.ToLower(tt.want), strings.ToLower(got), tt.msg)
	}
}

// fakeRIB records the loop's RIB changes.
type fakeRIB struct {
	ops chan ribOp
}

type ribOp struct {
	prefix   netip.Prefix
	announce bool
	graceful bool
	at       time.Time
}

func (f *fakeRIB) announce(p netip.Prefix, graceful bool) error {
	f.ops <- ribOp{p, true, graceful, time.Now()}
	return nil
}

func (f *fakeRIB) withdraw(p netip.Prefix) error {
	f.ops <- ribOp{p, false, false, time.Now()}
	return nil
}

func (f *fakeRIB) next(t *testing.T) ribOp {
	t.Helper()
	select {
	case op := <-f.ops:
		return op
	case <-time.After(5 * time.Second):
		t.Fatal("no RIB change")
		return ribOp{}
	}
}

func (f *fakeRIB) none(t *testing.T) {
	t.Helper()
	select {
	case op := <-f.ops:
		t.Fatalf("unexpected RIB change %+v", op)
	default:
	}
}

func TestLoopHoldDownAndGraceful(t *testing.T) {
	// Under synctest the loop's hold-down timer runs on the bubble's
	// clock: the re-announcement comes exactly HoldDown after the
	// withdrawal, however loaded the machine.
	synctest.Test(t, func(t *testing.T) {
		c := validConfig()
		c.HoldDown = 300 * time.Millisecond
		s, err := New(c, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
		require.NoError(t, err)
		f := &fakeRIB{ops: make(chan ribOp, 16)}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { s.loop(ctx, f) })
		defer func() { cancel(); wg.Wait() }()

		v4 := netip.MustParsePrefix("203.0.113.0/24")
		v6 := netip.MustParsePrefix("2001:db8:1::/48")

		s.SetAnnounce([]netip.Prefix{v6, v4})
		require.Equal(t, ribOp{prefix: v4, announce: true}, f.next(t).strip())
		require.Equal(t, ribOp{prefix: v6, announce: true}, f.next(t).strip())
		require.Eventually(t, func() bool { return len(s.Announced()) == 2 }, 5*time.Second, time.Millisecond)
		s.SetAnnounce([]netip.Prefix{v4, v6}) // idempotent
		synctest.Wait()                       // the loop has handled it
		f.none(t)

		s.SetGracefulShutdown(true)
		require.Equal(t, ribOp{prefix: v4, announce: true, graceful: true}, f.next(t).strip())
		require.Equal(t, ribOp{prefix: v6, announce: true, graceful: true}, f.next(t).strip())
		s.SetGracefulShutdown(false)
		require.Equal(t, ribOp{prefix: v4, announce: true}, f.next(t).strip())
		require.Equal(t, ribOp{prefix: v6, announce: true}, f.next(t).strip())

		s.SetAnnounce([]netip.Prefix{v6})
		w := f.next(t)
		require.Equal(t, ribOp{prefix: v4}, w.strip())
		synctest.Wait() // the loop records the withdrawal after the RIB call
		require.Equal(t, []netip.Prefix{v6}, s.Announced())

		s.SetAnnounce([]netip.Prefix{v4, v6})
		a := f.next(t)
		require.Equal(t, ribOp{prefix: v4, announce: true}, a.strip())
		held := a.at.Sub(w.at)
		t.Logf("re-announced %s after withdrawal (hold-down %s)", held, c.HoldDown)
		require.GreaterOrEqual(t, held, c.HoldDown)

		cancel()
		wg.Wait()
		require.Equal(t, ribOp{prefix: v4}, f.next(t).strip())
		require.Equal(t, ribOp{prefix: v6}, f.next(t).strip())
		require.Empty(t, s.Announced())
	})
}

func (o ribOp) strip() ribOp {
	o.at = time.Time{}
	return o
}

func TestRunTwice(t *testing.T) {
	c := validConfig()
	c.Neighbors = nil
	s, err := New(c, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, s.Run(ctx))
	require.ErrorIs(t, s.Run(ctx), ErrAlreadyRun)
}
