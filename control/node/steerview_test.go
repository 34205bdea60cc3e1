package node

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/wire"
	dnsedge "github.com/anyedge/anyedge/edge/dns"
)

// TestSteeringView: which PoPs the steered answers may name, from this
// edge's own state and the fleet the regions relay.
func TestSteeringView(t *testing.T) {
	z, err := dnsedge.NewZone(dnsedge.ZoneConfig{
		Origin: "accel.example.net", TTL: time.Minute, NSTTL: time.Minute,
		SOA:         dnsedge.SOA{MName: "ns.example.org", RName: "hostmaster.example.org", Minimum: time.Minute},
		Nameservers: []dnsedge.Nameserver{{Name: "ns.example.org"}},
		Names:       []dnsedge.Name{{Name: "game", Accelerator: "game", Steered: true}},
		Steering: dnsedge.Steering{TTL: 30 * time.Second, CatchAll: []string{"pop-a", "pop-b", "pop-c"},
			PoPs: []dnsedge.PoP{{Name: "pop-a", Addrs: []netip.Addr{netip.MustParseAddr("198.18.1.1")}},
				{Name: "pop-b", Addrs: []netip.Addr{netip.MustParseAddr("198.18.2.1")}},
				{Name: "pop-c", Addrs: []netip.Addr{netip.MustParseAddr("198.18.3.1")}}}},
	})
	require.NoError(t, err)
	srv, err := dnsedge.New(dnsedge.Config{Listen: []string{"127.0.0.1:0"}}, z)
	require.NoError(t, err)
	d := &edgeDNS{srv: srv, steered: z.Steered(), pops: []string{"pop-a", "pop-b", "pop-c"}}

	ready := wire.EdgeState{Ready: []string{"game"}}
	notReady := wire.EdgeState{Ready: []string{}}
	draining := wire.EdgeState{Draining: true, Ready: []string{"game"}}
	for _, tc := range []struct {
		name  string
		own   wire.EdgeState
		fleet map[string]wire.EdgeState
		view  bool
		want  []string
	}{
		{"all ready", ready, map[string]wire.EdgeState{"pop-b": ready, "pop-c": ready}, true, []string{"pop-a", "pop-b", "pop-c"}},
		{"a peer cannot reach a healthy region", ready, map[string]wire.EdgeState{"pop-b": notReady, "pop-c": ready}, true, []string{"pop-a", "pop-c"}},
		{"a peer drains", ready, map[string]wire.EdgeState{"pop-b": draining, "pop-c": ready}, true, []string{"pop-a", "pop-c"}},
		{"a peer vanished from the fleet", ready, map[string]wire.EdgeState{"pop-b": ready}, true, []string{"pop-a", "pop-b"}},
		{"this edge drains; the relay of it is older", draining, map[string]wire.EdgeState{"pop-a": ready, "pop-b": ready, "pop-c": ready}, true, []string{"pop-b", "pop-c"}},
		{"no region relays: the others count as available", notReady, nil, false, []string{"pop-b", "pop-c"}},
		{"nobody ready", notReady, map[string]wire.EdgeState{"pop-b": notReady, "pop-c": draining}, true, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.update("pop-a", tc.own, tc.fleet, tc.view)
			require.Equal(t, tc.want, d.avail["game"])
			require.Equal(t, tc.view, d.status().FleetView)
		})
	}
}
