package gateway_test

import (
	"io"
	"net/netip"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/portmap"
	"github.com/anyedge/anyedge/backbone/wire"
)

// withCustom serves subnet "s", 127.0.0.0/30 with the endpoint's port as
// its one (TCP) destination port, on listener ports 9000–9003: 9001
// reaches the endpoint. 127.0.0.1 and 127.0.0.3 are allowed; nothing
// listens on 127.0.0.3. Subnet "elsewhere" belongs to another region.
func withCustom(t *testing.T) fixtureOption {
	return func(cfg *gateway.Config, ep *endpoint) {
		dests := []portmap.DestPorts{{From: ep.port(), To: ep.port(), Protos: portmap.TCP}}
		tab, err := portmap.Compile(portmap.Listener{Key: "game/custom/9000", Ports: []portmap.PortRange{{From: 9000, To: 9099}},
			Subnets: []portmap.Subnet{
				{ID: "s", Region: regionName, Prefix: netip.MustParsePrefix("127.0.0.0/30"), Base: 9000, Ports: dests},
				{ID: "elsewhere", Region: "other", Prefix: netip.MustParsePrefix("127.0.0.0/30"), Base: 9050, Ports: dests},
			}})
		require.NoError(t, err)
		rules := portmap.NewRules([]*portmap.Table{tab}, map[string][]portmap.Grant{
			"s":         {{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.3")}}},
			"elsewhere": {{All: true}},
		})
		cfg.Custom = gateway.Custom{Subnets: map[string]gateway.CustomSubnet{"s": {Table: tab}}, Rules: rules}
	}
}

// answer sends a header and returns the region's answer code; on OK it
// proves the flow reaches the endpoint.
func (f *fixture) answer(t *testing.T, b []byte) wire.Code {
	t.Helper()
	s := f.open(t)
	_, err := s.Write(b)
	require.NoError(t, err)
	c := readCode(t, s)
	if c == wire.CodeOK {
		roundTrip(t, s, f.ep.accept(t))
	} else {
		rest, err := io.ReadAll(s)
		require.NoError(t, err)
		require.Empty(t, rest)
	}
	return c
}

// TestCustomRoutingAtTheRegion: the region computes the destination from
// the subnet ID and listener port with its own port map, refuses what is
// not allowed, outside the subnet's block or of another region, applies
// run-time operations at once, and refuses a destination whose dial just
// failed without dialling it again.
func TestCustomRoutingAtTheRegion(t *testing.T) {
	f := newFixture(t, 0, withCustom(t))
	require.Equal(t, wire.CodeOK, f.answer(t, header("s", 9001)))
	require.Equal(t, wire.CodeDenied, f.answer(t, header("s", 9002)), "127.0.0.2 is not allowed")
	require.Equal(t, wire.CodeNotAllowed, f.answer(t, header("s", 9004)), "outside the subnet's block")
	require.Equal(t, wire.CodeUnknownEndpoint, f.answer(t, header("elsewhere", 9051)), "another region's subnet")
	require.Equal(t, wire.CodeDenied, f.answer(t, headerKind(wire.KindUDP, "s", 9001)), "a TCP-only destination port")

	// Run-time operations, latest wins.
	_, err := f.gw.ApplyCustom(portmap.Op{Subnet: "s", Grant: portmap.Grant{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}})
	require.NoError(t, err)
	require.Equal(t, wire.CodeDenied, f.answer(t, header("s", 9001)))
	ov, err := f.gw.ApplyCustom(portmap.Op{Subnet: "s", Allow: true, Grant: portmap.Grant{All: true}})
	require.NoError(t, err)
	require.Equal(t, []portmap.Override{{Subnet: "s", Allow: true}}, ov)
	require.Equal(t, wire.CodeOK, f.answer(t, header("s", 9001)))
	_, err = f.gw.ApplyCustom(portmap.Op{Subnet: "elsewhere", Allow: true, Grant: portmap.Grant{All: true}})
	require.ErrorIs(t, err, gateway.ErrNotHere)

	// A refused dial marks the destination down.
	require.Equal(t, wire.CodeDialRefused, f.answer(t, header("s", 9003)))
	require.Equal(t, wire.CodeDestinationDown, f.answer(t, header("s", 9003)), "refused without a dial")
	down := f.gw.DownDestinations()
	require.Len(t, down, 1)
	require.Equal(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), f.ep.port()), down[0].Dest)
	require.Equal(t, "endpoint refused connection", down[0].Reason)
	require.Empty(t, f.ejected, "a subnet is not an endpoint of the health checker")
	f.gw.SetProbed("s", down[0].Dest, true, "")
	require.Empty(t, f.gw.DownDestinations(), "a successful probe clears it")
	f.gw.SetProbed("s", down[0].Dest, false, "connection refused")
	require.Equal(t, wire.CodeDestinationDown, f.answer(t, header("s", 9003)))
	require.True(t, f.gw.DownDestinations()[0].Probe)

	// No longer probed: the probe's mark goes, a failed dial's stays.
	f.gw.ClearProbed("s", down[0].Dest)
	require.Empty(t, f.gw.DownDestinations())
	require.Equal(t, wire.CodeDialRefused, f.answer(t, header("s", 9003)))
	f.gw.ClearProbed("s", down[0].Dest)
	require.Len(t, f.gw.DownDestinations(), 1, "a failed dial is not the probe's to clear")
}

// TestRegionWithoutCustomRouting is the mixed pair of versions: an edge
// that routes by subnet ID to a region that has no custom routing (or is
// older than it) gets "unknown endpoint", never a dial.
func TestRegionWithoutCustomRouting(t *testing.T) {
	f := newFixture(t, 0)
	require.Equal(t, wire.CodeUnknownEndpoint, f.answer(t, header("s", 9001)))
	_, err := f.gw.ApplyCustom(portmap.Op{Subnet: "s", Allow: true, Grant: portmap.Grant{All: true}})
	require.ErrorIs(t, err, gateway.ErrNotHere)
}

// TestControlCustomRoutingOldAndNewEdges: an edge of control protocol 3
// gets the custom routing state after the fleet, and again on every
// run-time operation; an edge of protocol 2 never sees the message type.
func TestControlCustomRoutingOldAndNewEdges(t *testing.T) {
	f := newFixture(t, 0, withCustom(t))
	_, oldR := f.control(t, 2)
	_, newR := f.control(t, wire.ControlProto)
	for _, r := range []*msgReader{oldR, newR} {
		for _, want := range []wire.MsgType{wire.MsgHealth, wire.MsgLoad, wire.MsgFleet} {
			typ, _ := r.next(t)
			require.Equal(t, want, typ)
		}
	}
	typ, body := newR.next(t)
	require.Equal(t, wire.MsgCustomRouting, typ)
	require.JSONEq(t, `{"overrides":[],"down":[]}`, string(body))

	_, err := f.gw.ApplyCustom(portmap.Op{Subnet: "s", Allow: true, Grant: portmap.Grant{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.2")}, Ports: []uint16{f.ep.port()}}})
	require.NoError(t, err)
	for typ != wire.MsgCustomRouting || string(body) == `{"overrides":[],"down":[]}` {
		typ, body = newR.next(t)
	}
	require.JSONEq(t, `{"overrides":[{"subnet":"s","address":"127.0.0.2","port":`+itoa(f.ep.port())+`,"allow":true}],"down":[]}`, string(body))

	f.gw.SetHealth([]wire.EndpointHealth{{ID: "web", Healthy: false}})
	for {
		typ, _ := oldR.next(t)
		require.NotEqual(t, wire.MsgCustomRouting, typ, "a protocol 2 edge got custom routing state")
		if typ == wire.MsgHealth {
			break
		}
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
