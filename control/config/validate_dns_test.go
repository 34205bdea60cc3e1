package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// dnsBase is base with a dns section and a DNS-steered accelerator.
var dnsBase = strings.Replace(base, "  regions:\n", "    - name: pop-b\n  regions:\n", 1) + `dns:
  zone: accel.example.net
  listen: ["198.18.0.1:53"]
  nameservers:
    - name: ns1.accel.example.net
      addresses: [198.18.0.1, "2001:db8:ff::1"]
    - name: ns.example.org
  steering:
    pops:
      - name: pop-a
        addresses: [198.18.5.1, "2001:db8:5::1"]
      - name: pop-b
        addresses: [198.18.6.1]
    clients:
      - prefix: 198.18.100.0/24
        pops: [pop-b, pop-a]
    catch_all: [pop-a, pop-b]
`

// steeredAccel is a DNS-steered accelerator to append to accelerators.
const steeredAccel = `accelerators:
  - name: Game_Lobby
    steering: dns
    listeners:
      - protocol: tcp
        port_ranges: [{from: 7000, to: 7010}]
        endpoint_groups: [{region: eu, endpoints: [{id: lobby-1, address: 198.18.10.9}]}]
`

func TestLoadDNS(t *testing.T) {
	doc, err := Load([]byte(edit(t, dnsBase, "accelerators:\n", steeredAccel)), noEnv)
	require.NoError(t, err)
	z := doc.DNS
	require.NotNil(t, z)
	require.Equal(t, "game-lobby", doc.Accelerators[0].DNSName, "derived from the name")
	require.Equal(t, "dns", doc.Accelerators[0].Steering)
	require.Equal(t, "web", doc.Accelerators[1].DNSName)
	require.Equal(t, "anycast", doc.Accelerators[1].Steering)
	require.Equal(t, 300*time.Second, z.TTL)
	require.Equal(t, 3600*time.Second, z.NSTTL)
	require.Equal(t, 1232, z.UDPSize)
	require.Equal(t, SOA{MName: "ns1.accel.example.net", RName: "hostmaster.accel.example.net", Serial: 1,
		Refresh: time.Hour, Retry: 15 * time.Minute, Expire: 7 * 24 * time.Hour, Minimum: time.Minute}, z.SOA)
	require.Equal(t, 20, z.RRL.ResponsesPerSecond)
	require.Equal(t, 2, *z.RRL.Slip)
	require.Equal(t, 24, z.RRL.IPv4PrefixLen)
	require.Equal(t, 56, z.RRL.IPv6PrefixLen)
	require.Equal(t, 30*time.Second, z.Steering.TTL)

	// Without a dns section nothing is derived, and listen has its default
	// only with one.
	doc, err = Load([]byte(base), noEnv)
	require.NoError(t, err)
	require.Nil(t, doc.DNS)
	require.Empty(t, doc.Accelerators[0].DNSName)
	doc, err = Load([]byte(edit(t, dnsBase, `  listen: ["198.18.0.1:53"]`+"\n", "")), noEnv)
	require.NoError(t, err)
	require.Equal(t, []string{":53"}, doc.DNS.Listen)

	// WithDefaults shares nothing with its input.
	in := *doc
	out := in.WithDefaults()
	out.DNS.Steering.PoPs[0].Addresses[0] = "x"
	*out.DNS.RRL.Slip = 9
	require.Equal(t, "198.18.5.1", in.DNS.Steering.PoPs[0].Addresses[0])
	require.Equal(t, 2, *in.DNS.RRL.Slip)
}

func TestLoadDNSBroken(t *testing.T) {
	cases := []struct {
		name  string
		edits []string
		want  []string
	}{
		{"zone missing", []string{"  zone: accel.example.net\n", ""},
			[]string{"dns.zone: required"}},
		{"zone not a name", []string{"zone: accel.example.net", "zone: accel..example"},
			[]string{`dns.zone: "accel..example" is not a domain name`}},
		{"bad listen", []string{`listen: ["198.18.0.1:53"]`, `listen: ["198.18.0.1"]`},
			[]string{`dns.listen[0]: "198.18.0.1" is not host:port`}},
		{"bad pop dns_listen", []string{"    - name: pop-b\n", "    - name: pop-b\n      dns_listen: [nowhere]\n"},
			[]string{`topology.pops[1].dns_listen[0]: "nowhere" is not host:port`}},
		{"ttl not whole seconds", []string{"  zone: accel.example.net\n", "  zone: accel.example.net\n  ttl: 1500ms\n  ns_ttl: 100ms\n"},
			[]string{"dns.ttl: 1.5s is not a whole number of seconds", "dns.ns_ttl: 100ms is below 1s"}},
		{"udp size", []string{"  zone: accel.example.net\n", "  zone: accel.example.net\n  udp_size: 100\n"},
			[]string{"dns.udp_size: 100 is outside 512–4096"}},
		{"no nameservers", []string{"  nameservers:\n    - name: ns1.accel.example.net\n      addresses: [198.18.0.1, \"2001:db8:ff::1\"]\n    - name: ns.example.org\n", ""},
			[]string{"dns.nameservers: at least one nameserver is required"}},
		{"in-zone nameserver without glue", []string{`      addresses: [198.18.0.1, "2001:db8:ff::1"]` + "\n", ""},
			[]string{"dns.nameservers[0].addresses: ns1.accel.example.net is inside the zone: give its addresses"}},
		{"out-of-zone nameserver with addresses", []string{"    - name: ns.example.org\n", "    - name: ns.example.org\n      addresses: [198.18.0.2]\n"},
			[]string{"dns.nameservers[1].addresses: ns.example.org is outside the zone"}},
		{"nameserver address", []string{"addresses: [198.18.0.1,", "addresses: [224.0.0.1,"},
			[]string{`dns.nameservers[0].addresses[0]: "224.0.0.1" is not a unicast IP address`}},
		{"rname with @", []string{"  zone: accel.example.net\n", "  zone: accel.example.net\n  soa: {rname: hostmaster@example.net, minimum: 0s, retry: 2.5s}\n"},
			[]string{`dns.soa.rname: "hostmaster@example.net": write the mailbox as a name`, "dns.soa.retry: 2.5s is not a whole number"}},
		{"rrl ranges", []string{"  zone: accel.example.net\n", "  zone: accel.example.net\n  rrl: {responses_per_second: -1, slip: 11, ipv4_prefix_len: 33, ipv6_prefix_len: 8}\n"},
			[]string{"dns.rrl.responses_per_second: -1 is outside 1–1000000", "dns.rrl.slip: 11 is outside 0–10",
				"dns.rrl.ipv4_prefix_len: 33 is outside 8–32", "dns.rrl.ipv6_prefix_len: 8 is outside 16–128"}},
		{"dns name clashes with a nameserver", []string{"  - name: web\n", "  - name: web\n    dns_name: ns1\n"},
			[]string{"accelerators[0].dns_name: ns1.accel.example.net is also the name of dns.nameservers[0].name"}},
		{"dns name not relative", []string{"  - name: web\n", "  - name: web\n    dns_name: www.\n"},
			[]string{`accelerators[0].dns_name: "www." is not a name relative to the zone`}},
		{"name without a label", []string{"  - name: web\n", "  - name: ___\n"},
			[]string{`accelerators[0].dns_name: cannot derive a DNS name from name "___": set dns_name`}},
		{"bad steering", []string{"  - name: web\n", "  - name: web\n    steering: geo\n"},
			[]string{`accelerators[0].steering: must be "anycast" or "dns", got "geo"`}},
		{"steering pop unknown", []string{"      - name: pop-b\n        addresses", "      - name: pop-c\n        addresses"},
			[]string{`dns.steering.pops[1].name: "pop-c" is not a pop of topology.pops (pops: pop-a, pop-b)`,
				`dns.steering.clients[0].pops[0]: "pop-b" is not a pop of dns.steering.pops`}},
		{"steering address is anycast", []string{"addresses: [198.18.6.1]", "addresses: [203.0.113.10, 198.18.5.1]"},
			[]string{"dns.steering.pops[1].addresses[0]: 203.0.113.10 is an accelerator's anycast address",
				"dns.steering.pops[1].addresses[1]: 198.18.5.1 is also an address of dns.steering.pops[0]"}},
		{"client prefix", []string{"prefix: 198.18.100.0/24", "prefix: 198.18.100.1/24"},
			[]string{"dns.steering.clients[0].prefix: 198.18.100.1/24 has host bits set (did you mean 198.18.100.0/24?)"}},
		{"client pops twice", []string{"pops: [pop-b, pop-a]", "pops: [pop-b, pop-b]"},
			[]string{`dns.steering.clients[0].pops[1]: "pop-b" is listed twice`}},
		{"steered accelerator with addresses", []string{"accelerators:\n", steeredAccel, "    steering: dns\n", "    steering: dns\n    ip_addresses: [203.0.113.50]\n"},
			[]string{`accelerators[0].ip_addresses: must be empty with steering "dns"`}},
		{"steered without catch-all", []string{"accelerators:\n", steeredAccel, "    catch_all: [pop-a, pop-b]\n", ""},
			[]string{`dns.steering.catch_all: required: an accelerator has steering "dns"`}},
		{"steered ports meet", []string{"accelerators:\n", steeredAccel + "  - name: chat\n    steering: dns\n    listeners: [{protocol: tcp, port_ranges: [{from: 7005}], endpoint_groups: [{region: eu}]}]\n"},
			[]string{"accelerators[1].listeners[0].port_ranges[0]: tcp port 7005 is also used by accelerators[0].listeners[0].port_ranges[0]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(edit(t, dnsBase, tc.edits...)), noEnv)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	// Steering "dns" without the section at all.
	_, err := Load([]byte(edit(t, base, "accelerators:\n", steeredAccel)), noEnv)
	require.ErrorContains(t, err, `accelerators[0].steering: "dns" needs the dns section`)
	_, err = Load([]byte(edit(t, base, "  - name: web\n", "  - name: web\n    dns_name: www\n")), noEnv)
	require.ErrorContains(t, err, "accelerators[0].dns_name: set, but the document has no dns section")
}
