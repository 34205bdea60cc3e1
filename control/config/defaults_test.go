package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWithDefaults(t *testing.T) {
	in := Document{
		Accelerators: []Accelerator{{
			Name: "a",
			Listeners: []Listener{
				{Protocol: "tcp", PortRanges: []PortRange{{From: 80}, {From: 90, To: 95}},
					EndpointGroups: []EndpointGroup{{Region: "r", Endpoints: []Endpoint{{ID: "e1"}, {ID: "e2", Weight: ptr(0)}}}}},
				{Protocol: "udp", EndpointGroups: []EndpointGroup{{Region: "r", TrafficDial: ptr(0)}}},
				{Protocol: "udp", IdleTimeout: 5 * time.Second, ClientAffinity: "source_ip"},
			},
		}},
		Topology: Topology{
			PoPs: []PoP{{Name: "p", BGP: BGP{Neighbors: []BGPNeighbor{{Address: "198.18.0.1"}}}}},
			Regions: []Region{
				{Name: "r", Backbone: BackboneServer{Listen: "198.18.1.1:4433"}},
				{Name: "s", Backbone: BackboneServer{Listen: "0.0.0.0:4433", Address: "198.18.2.1:4433"}},
			},
		},
	}
	out := in.WithDefaults()

	l := out.Accelerators[0].Listeners
	require.Equal(t, "none", l[0].ClientAffinity)
	require.Equal(t, 340*time.Second, l[0].IdleTimeout)
	require.Equal(t, 30*time.Second, l[1].IdleTimeout)
	require.Equal(t, 5*time.Second, l[2].IdleTimeout, "explicit value kept")
	require.Equal(t, "source_ip", l[2].ClientAffinity, "explicit value kept")
	require.Equal(t, []PortRange{{80, 80}, {90, 95}}, l[0].PortRanges)

	g := l[0].EndpointGroups[0]
	require.Equal(t, 100, *g.TrafficDial)
	require.Equal(t, 0, *l[1].EndpointGroups[0].TrafficDial, "explicit 0 kept")
	require.Empty(t, l[1].EndpointGroups[0].HealthCheck.Protocol, "a udp listener's group has no default probe")
	require.Equal(t, "/", l[1].EndpointGroups[0].HealthCheck.Path, "its other keys have their defaults")
	require.Equal(t, 128, *g.Endpoints[0].Weight)
	require.Equal(t, 0, *g.Endpoints[1].Weight, "explicit 0 kept")
	require.Equal(t, HealthCheck{
		Protocol: "tcp", Path: "/", StatusCodes: "200-399",
		DNSName: ".", DNSType: "A", DNSRcode: "NOERROR",
		Interval: 10 * time.Second, Timeout: 5 * time.Second,
		HealthyThreshold: 3, UnhealthyThreshold: 3,
	}, g.HealthCheck)

	top := out.Topology
	require.Equal(t, "/etc/anyedge/pki", top.PKIDir)
	p := top.PoPs[0]
	require.Equal(t, "127.0.0.1:9180", p.Admin)
	require.Equal(t, BackboneClient{Connections: 4, StripeLanes: 4, StripeAfterBytes: 256 << 10, StripeMinRTT: 20 * time.Millisecond,
		FEC: FECAuto, FECMinRTT: 20 * time.Millisecond, Retire: FECAuto, KeepAlivePeriod: time.Second, IdleTimeout: 3 * time.Second}, p.Backbone)
	require.Equal(t, UDPLimits{MaxFlows: 262144, MaxFlowsPerSource: 1024}, p.UDP)
	require.Equal(t, 2*time.Second, p.BGP.HoldDown)
	require.Equal(t, 9*time.Second, p.BGP.Neighbors[0].HoldTime)
	require.Equal(t, 3*time.Second, p.BGP.Neighbors[0].Keepalive)
	require.Equal(t, Drain{BGPGrace: 5 * time.Second, Timeout: 60 * time.Second}, p.Drain)
	require.Equal(t, "127.0.0.1:9181", top.Regions[0].Admin)
	require.Equal(t, "198.18.1.1:4433", top.Regions[0].Backbone.Address)
	require.Equal(t, "198.18.2.1:4433", top.Regions[1].Backbone.Address, "explicit value kept")
	require.Equal(t, FECAuto, top.Regions[0].Backbone.FEC)

	// The input is untouched: nothing is shared with the output.
	require.Nil(t, in.Accelerators[0].Listeners[0].EndpointGroups[0].TrafficDial)
	require.Nil(t, in.Accelerators[0].Listeners[0].EndpointGroups[0].Endpoints[0].Weight)
	require.Zero(t, in.Accelerators[0].Listeners[0].PortRanges[0].To)
	require.Empty(t, in.Topology.PoPs[0].Admin)
	require.Zero(t, in.Topology.PoPs[0].BGP.Neighbors[0].HoldTime)
	*out.Accelerators[0].Listeners[0].EndpointGroups[0].Endpoints[1].Weight = 7
	require.Equal(t, 0, *in.Accelerators[0].Listeners[0].EndpointGroups[0].Endpoints[1].Weight)

	// Applying defaults twice changes nothing.
	require.Equal(t, out, out.WithDefaults())
}
