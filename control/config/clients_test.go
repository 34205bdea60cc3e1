package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestClientLists: allow and deny lists, inline and from files, with a
// bare address for one host and comments in files.
func TestClientLists(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "deny.txt")
	require.NoError(t, os.WriteFile(file, []byte("# scanners\n198.51.100.0/24\n\n2001:db8:bad::/48  # one of them\n192.0.2.7\n"), 0o644))
	doc, err := Load([]byte(edit(t, base, "      - protocol: tcp\n", fmt.Sprintf(
		"      - protocol: tcp\n        allow: [0.0.0.0/0, \"::/0\"]\n        deny: [203.0.113.99]\n        deny_file: %s\n"+
			"        limits: {max_flows: 1000, max_flows_per_source: 10, new_flows_per_second: 5.5}\n", file))), noEnv)
	require.NoError(t, err)
	l := &doc.Accelerators[0].Listeners[0]
	allow, deny, err := l.ClientLists()
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, allow)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("203.0.113.99/32"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("2001:db8:bad::/48"), netip.MustParsePrefix("192.0.2.7/32")}, deny)
	require.Equal(t, 5.5, l.Limits.NewFlowsPerSecond)
	require.Equal(t, 65536, doc.Topology.PoPs[0].Limits.RateBuckets)
}

// TestClientListsBroken: every bad entry, file line and limit is named
// with its path.
func TestClientListsBroken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "allow.txt")
	require.NoError(t, os.WriteFile(file, []byte("198.18.0.0/15\nnot-a-prefix\n"), 0o644))
	l0 := "accelerators[0].listeners[0]"
	_, err := Load([]byte(edit(t, base,
		"      - protocol: tcp\n", fmt.Sprintf(
			"      - protocol: tcp\n        allow: [198.18.0.1/15, \"::ffff:1.2.3.0/120\", nope]\n        allow_file: %s\n"+
				"        deny_file: %s\n        limits: {max_flows: 5, max_flows_per_source: 6, new_flows_per_second: -1, new_flows_burst: 3}\n",
			file, filepath.Join(dir, "missing.txt")),
		"    - name: pop-a\n", "    - name: pop-a\n      limits: {max_connections: -1, rate_buckets: 99999999}\n",
		"    - name: eu\n", "    - name: eu\n      limits: {max_flows: 10, max_flows_per_edge: 11}\n")), noEnv)
	require.Error(t, err)
	for _, want := range []string{
		l0 + ".allow[0]: 198.18.0.1/15 has host bits set (did you mean 198.18.0.0/15?)",
		l0 + ".allow[1]: ::ffff:1.2.3.0/120 is IPv4-mapped",
		l0 + `.allow[2]: "nope" is not a prefix or an address`,
		l0 + ".allow_file: " + file + ` line 2: "not-a-prefix" is not a prefix or an address`,
		l0 + ".deny_file: open " + filepath.Join(dir, "missing.txt"),
		l0 + ".limits.max_flows_per_source: 6 is above max_flows 5",
		l0 + ".limits.new_flows_per_second: -1 is outside 0–1e9",
		"topology.pops[0].limits.max_connections: -1 is negative",
		"topology.pops[0].limits.rate_buckets: 99999999 is outside 1–16777216",
		"topology.regions[0].limits.max_flows_per_edge: 11 is above max_flows 10",
	} {
		require.Contains(t, err.Error(), want)
	}
}

// TestEveryFieldAtItsLimit: a document with each bounded value at the
// edge of its range loads; the tests of broken documents hold the values
// one past it.
func TestEveryFieldAtItsLimit(t *testing.T) {
	doc := edit(t, base,
		"          - from: 443\n            to: 443\n", "          - from: 443\n            to: 65535\n",
		"                weight: 100\n", "                weight: 255\n",
		"            traffic_dial: 50\n", "            traffic_dial: 100\n",
		"              path: /healthz\n", "              path: /healthz\n              healthy_threshold: 10\n              unhealthy_threshold: 10\n              interval: 1s\n              timeout: 1s\n",
		"        endpoint_groups:\n          - region: eu\n", "        limits: {max_flows: 2147483647, max_flows_per_source: 2147483647, new_flows_per_second: 1e9, new_flows_burst: 1000000000}\n        endpoint_groups:\n          - region: eu\n",
		"        router_id: 198.18.0.1\n", "        router_id: 198.18.0.1\n        as_path_prepend: 10\n        med: 4294967295\n",
		"            peer_asn: 64600\n", "            peer_asn: 4294967294\n            hold_time: 65535s\n            keepalive: 65534s\n            multihop: 255\n",
		"    - name: pop-a\n", "    - name: pop-a\n      backbone: {connections: 16}\n      udp: {max_flows: 2147483647, max_flows_per_source: 2147483647}\n"+
			"      limits: {max_connections: 2147483647, rate_buckets: 16777216}\n"+
			"      flow_logs: {enabled: true, path: /var/log/anyedge/flows.log, sample_rate: 1, queue_size: 16777216, max_size_mb: 1000000, max_files: 1000}\n",
		"    - name: eu\n", "    - name: eu\n      limits: {max_flows: 2147483647, max_flows_per_edge: 2147483647}\n")
	d, err := Load([]byte(doc), noEnv)
	require.NoError(t, err)
	require.Equal(t, 16777216, d.Topology.PoPs[0].Limits.RateBuckets)
	require.Equal(t, 65535, d.Accelerators[0].Listeners[0].PortRanges[1].To)
}
