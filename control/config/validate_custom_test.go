package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// customAccel is a custom routing accelerator added in front of base's
// accelerators: two regions, three subnets.
const customAccel = `accelerators:
  - name: game
    kind: custom_routing
    ip_addresses: [203.0.113.20]
    listeners:
      - port_ranges: [{from: 10000, to: 19999}]
        endpoint_groups:
          - region: eu
            destination_ports:
              - {from: 7000, to: 7001}
              - {from: 9000, protocols: [udp]}
            subnets:
              - id: eu-game-a
                cidr: 198.18.64.0/24
                listener_port_base: 10000
                allow_all_traffic: true
              - id: eu-game-b
                cidr: 198.18.65.0/28
                listener_port_base: 11000
                client_ip_preservation: true
                allow:
                  - {addresses: [198.18.65.7], ports: [7000]}
                  - {addresses: [198.18.65.8]}
          - region: us
            destination_ports: [{from: 7777, protocols: [tcp]}]
            subnets:
              - {id: us-game, cidr: 198.18.80.0/20, listener_port_base: 12000}
`

func TestLoadCustomRouting(t *testing.T) {
	doc, err := Load([]byte(edit(t, base, "accelerators:\n", customAccel)), noEnv)
	require.NoError(t, err)
	a := doc.Accelerators[0]
	require.Equal(t, KindCustomRouting, a.Kind)
	require.Equal(t, KindStandard, doc.Accelerators[1].Kind)
	l := a.Listeners[0]
	require.Empty(t, l.Protocol)
	require.Empty(t, l.ClientAffinity, "no affinity for custom routing")
	require.Zero(t, l.IdleTimeout, "each protocol takes its own default")
	g := l.EndpointGroups[0]
	require.Nil(t, g.TrafficDial)
	require.Equal(t, []DestinationPorts{{From: 7000, To: 7001, Protocols: []string{"tcp", "udp"}}, {From: 9000, To: 9000, Protocols: []string{"udp"}}}, g.DestinationPorts)
	require.Zero(t, g.HealthCheck, "no health_check: no probes")
	again := doc.WithDefaults()
	require.NoError(t, again.Validate())
	require.Equal(t, *doc, again)

	// A health_check probes; over TCP unless a destination port is
	// UDP-only (then the group must say how, as a udp listener's group).
	doc, err = Load([]byte(edit(t, edit(t, base, "accelerators:\n", customAccel),
		"            destination_ports: [{from: 7777", "            health_check: {interval: 6s}\n            destination_ports: [{from: 7777",
		"              - {from: 9000, protocols: [udp]}", "              - {from: 9000, protocols: [udp]}\n            health_check: {protocol: dns}")), noEnv)
	require.NoError(t, err)
	hc := doc.Accelerators[0].Listeners[0].EndpointGroups[1].HealthCheck
	require.Equal(t, "tcp", hc.Protocol)
	require.Equal(t, 6*time.Second, hc.Interval)
	require.Equal(t, 3, hc.UnhealthyThreshold)
	require.Equal(t, "dns", doc.Accelerators[0].Listeners[0].EndpointGroups[0].HealthCheck.Protocol)
	again = doc.WithDefaults()
	require.NoError(t, again.Validate())
	require.Equal(t, *doc, again)
}

func TestLoadCustomRoutingBroken(t *testing.T) {
	const g0 = "accelerators[0].listeners[0].endpoint_groups[0]"
	cases := []struct {
		name  string
		edits []string
		want  []string
	}{
		{"bad kind", []string{"kind: custom_routing", "kind: custom"},
			[]string{`accelerators[0].kind: must be "standard" or "custom_routing", got "custom"`}},
		{"protocol on listener", []string{"      - port_ranges: [{from: 10000, to: 19999}]", "      - protocol: tcp\n        port_ranges: [{from: 10000, to: 19999}]"},
			[]string{"accelerators[0].listeners[0].protocol: must be empty for a custom_routing listener"}},
		{"blocks overlap", []string{"listener_port_base: 11000", "listener_port_base: 10700"},
			[]string{g0 + ".subnets[1].listener_port_base: ports 10700–10747 overlap " + g0 + ".subnets[0] (ports 10000–10767)"}},
		{"blocks overlap across groups", []string{"listener_port_base: 12000", "listener_port_base: 10500"},
			[]string{"accelerators[0].listeners[0].endpoint_groups[1].subnets[0].listener_port_base: ports 10500–14595 overlap " + g0 + ".subnets[0] (ports 10000–10767)"}},
		{"block does not fit", []string{"cidr: 198.18.80.0/20", "cidr: 198.18.128.0/17"},
			[]string{"accelerators[0].listeners[0].endpoint_groups[1].subnets[0].listener_port_base: the subnet's 32768 ports (32768 addresses × 1 destination ports) from 12000 end at 44767, not within one of the listener's port_ranges"}},
		{"block past the range", []string{"listener_port_base: 10000", "listener_port_base: 19500"},
			[]string{g0 + ".subnets[0].listener_port_base: the subnet's 768 ports (256 addresses × 3 destination ports) from 19500 end at 20267, not within one of the listener's port_ranges"}},
		{"cidr too wide", []string{"cidr: 198.18.80.0/20", "cidr: 198.18.0.0/16"},
			[]string{"accelerators[0].listeners[0].endpoint_groups[1].subnets[0].cidr: /16 is wider than /17: a /16 has 65536 addresses"}},
		{"cidr too narrow", []string{"cidr: 198.18.65.0/28", "cidr: 198.18.65.0/30"},
			[]string{g0 + ".subnets[1].cidr: /30 is narrower than /28; set any_prefix_length: true to allow it"}},
		{"cidr host bits, ipv6", []string{"cidr: 198.18.65.0/28", "cidr: 198.18.65.1/28", "cidr: 198.18.64.0/24", `cidr: "2001:db8::/120"`},
			[]string{g0 + ".subnets[1].cidr: 198.18.65.1/28 has host bits set (did you mean 198.18.65.0/28?)",
				g0 + `.subnets[0].cidr: 2001:db8::/120 is not IPv4`}},
		{"duplicate subnet id", []string{"id: us-game", "id: eu-game-a"},
			[]string{`accelerators[0].listeners[0].endpoint_groups[1].subnets[0].id: duplicate id "eu-game-a" (first at ` + g0 + ".subnets[0])"}},
		{"subnet id is an endpoint id", []string{"id: us-game", "id: eu-1"},
			[]string{`accelerators[1].listeners[0].endpoint_groups[0].endpoints[0].id: duplicate id "eu-1" (first at accelerators[0].listeners[0].endpoint_groups[1].subnets[0])`}},
		{"destination ports", []string{"- {from: 9000, protocols: [udp]}", "- {from: 7001, protocols: [sctp]}"},
			[]string{g0 + ".destination_ports[1]: port 7001 is also in " + g0 + ".destination_ports[0]",
				g0 + `.destination_ports[1].protocols[0]: must be "tcp" or "udp", got "sctp"`}},
		{"no destination ports", []string{"destination_ports: [{from: 7777, protocols: [tcp]}]", "destination_ports: []"},
			[]string{"accelerators[0].listeners[0].endpoint_groups[1].destination_ports: at least one destination port range is required"}},
		{"allow outside", []string{"addresses: [198.18.65.7], ports: [7000]", "addresses: [198.18.66.7], ports: [7002]"},
			[]string{g0 + ".subnets[1].allow[0].addresses[0]: 198.18.66.7 is outside the subnet 198.18.65.0/28",
				g0 + ".subnets[1].allow[0].ports[0]: 7002 is not one of the group's destination_ports"}},
		{"endpoints in a custom group", []string{"            destination_ports: [{from: 7777", "            endpoints: [{id: x, address: 198.18.1.1}]\n            traffic_dial: 50\n            destination_ports: [{from: 7777"},
			[]string{"accelerators[0].listeners[0].endpoint_groups[1].endpoints: a custom_routing group has subnets, not endpoints"}},
		{"udp-only destination port, probe protocol unsaid", []string{"              - {from: 9000, protocols: [udp]}", "              - {from: 9000, protocols: [udp]}\n            health_check: {interval: 2s}"},
			[]string{g0 + ".health_check.protocol: required for a custom_routing group with UDP-only destination_ports (a tcp probe of a UDP-only endpoint always fails)"}},
		{"bad health check", []string{"            destination_ports: [{from: 7777", "            health_check: {protocol: tcp, interval: 100ms}\n            destination_ports: [{from: 7777"},
			[]string{"accelerators[0].listeners[0].endpoint_groups[1].health_check.interval: 100ms is below 1s"}},
		{"dns steering", []string{"kind: custom_routing", "kind: custom_routing\n    steering: dns"},
			[]string{`accelerators[0].steering: must be "anycast" for a custom_routing accelerator`}},
		{"subnets on a standard group", []string{"kind: custom_routing", "kind: standard"},
			[]string{g0 + ".destination_ports: only for custom_routing accelerators", g0 + ".subnets: only for custom_routing accelerators",
				"accelerators[0].listeners[0].protocol: required"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(edit(t, edit(t, base, "accelerators:\n", customAccel), tc.edits...)), noEnv)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}
