package config

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// zonedBase gives base's accelerator a zone per address and the PoP zone a.
func zonedBase(t *testing.T) string {
	return edit(t, base,
		"    prefixes: [203.0.113.0/24, \"2001:db8::/48\"]\n",
		"    prefixes: [203.0.113.0/24, \"2001:db8::/48\"]\n    zones:\n      - {name: a, ip_addresses: [203.0.113.10]}\n      - {name: b, ip_addresses: [\"2001:db8::10\"]}\n",
		"    - name: pop-a\n", "    - name: pop-a\n      zones: [a]\n    - name: pop-b\n      zones: [b]\n")
}

func TestZones(t *testing.T) {
	doc, err := Load([]byte(zonedBase(t)), noEnv)
	require.NoError(t, err)
	a := &doc.Accelerators[0]
	require.Equal(t, "a", a.ZoneOf(mustAddr("203.0.113.10")))
	require.Equal(t, "b", a.ZoneOf(mustAddr("2001:db8::10")))
	require.Equal(t, "", a.ZoneOf(mustAddr("203.0.113.11")))
	require.True(t, doc.Topology.PoPs[0].ServesZone("a"))
	require.False(t, doc.Topology.PoPs[0].ServesZone("b"))
	require.True(t, doc.Topology.PoPs[0].ServesZone(""), "an address in no zone is every PoP's")
	require.Empty(t, doc.Warnings(), "two zones on two PoP sets")

	noZones, err := Load([]byte(base), noEnv)
	require.NoError(t, err)
	require.Empty(t, noZones.Warnings(), "a document without zones gets no zone warnings")
	require.True(t, noZones.Topology.PoPs[0].ServesZone("anything"))
}

func TestZonesWarnings(t *testing.T) {
	cases := []struct {
		name  string
		edits []string
		want  string
	}{
		{"all in zone a", []string{"{name: a, ip_addresses: [203.0.113.10]}", "{name: a, ip_addresses: [203.0.113.10, \"2001:db8::10\"]}",
			"      - {name: b, ip_addresses: [\"2001:db8::10\"]}\n", "", "      zones: [b]\n", ""},
			`accelerators[0].zones: every address of the accelerator is in zone "a"`},
		{"same PoPs", []string{"      zones: [a]\n", "      zones: [a, b]\n", "      zones: [b]\n", "      zones: [a, b]\n"},
			"accelerators[0].zones: every address of the accelerator is served by the same PoPs (pop-a, pop-b)"},
		{"served by no PoP", []string{"      zones: [b]\n", "      zones: [a]\n"},
			`accelerators[0].ip_addresses: 2001:db8::10 (zone "b") is served by no PoP`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := Load([]byte(edit(t, zonedBase(t), tc.edits...)), noEnv)
			require.NoError(t, err)
			ws := doc.Warnings()
			require.NotEmpty(t, ws)
			require.Contains(t, ws[0].String(), tc.want)
		})
	}
}

func TestZonesBroken(t *testing.T) {
	cases := []struct {
		name  string
		edits []string
		want  []string
	}{
		{"address not the accelerator's", []string{"{name: b, ip_addresses: [\"2001:db8::10\"]}", "{name: b, ip_addresses: [\"2001:db8::11\", 203.0.113.10, x]}"},
			[]string{"accelerators[0].zones[1].ip_addresses[0]: 2001:db8::11 is not one of the accelerator's ip_addresses",
				`accelerators[0].zones[1].ip_addresses[1]: 203.0.113.10 is already in zone "a"`,
				`accelerators[0].zones[1].ip_addresses[2]: "x" is not an IP address`}},
		{"duplicate zone", []string{"{name: b,", "{name: a,"},
			[]string{`accelerators[0].zones[1].name: duplicate zone "a" (first at accelerators[0].zones[0])`}},
		{"prefix spans zones", []string{"prefixes: [203.0.113.0/24, \"2001:db8::/48\"]", "prefixes: [203.0.113.0/24, \"2001:db8::/48\"]\n    ip_addresses: [203.0.113.10, \"2001:db8::10\", 203.0.113.11]",
			"    ip_addresses: [203.0.113.10, \"2001:db8::10\"]\n", ""},
			[]string{"accelerators[0].prefixes[0]: 203.0.113.0/24 covers addresses of zones a, (none): a PoP announcing it would draw every zone's traffic"}},
		{"unknown PoP zone", []string{"zones: [b]", "zones: [c, c]"},
			[]string{`topology.pops[1].zones[0]: "c" is no accelerator's zone`, `topology.pops[1].zones[1]: "c" is listed twice`}},
		{"zones of a steered accelerator", []string{"  - name: web\n", "  - name: web\n    steering: dns\n"},
			[]string{`accelerators[0].zones: must be empty with steering "dns"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(edit(t, zonedBase(t), tc.edits...)), noEnv)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
