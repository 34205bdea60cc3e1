package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// noEnv turns environment overrides off so tests do not depend on the host.
var noEnv = LoadOptions{Env: []string{}}

// base (testdata/base.yaml) is a small valid document; the table test
// breaks it one edit at a time. Line numbers matter to the messages tests
// expect. control/node builds it too.
var base = func() string {
	b, err := os.ReadFile("testdata/base.yaml")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// edit replaces the first occurrence of old by new in base and fails the test
// when old is missing, so that edits cannot silently stop applying.
func edit(t *testing.T, doc string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		require.Contains(t, doc, pairs[i], "edit target missing")
		doc = strings.Replace(doc, pairs[i], pairs[i+1], 1)
	}
	return doc
}

func TestLoadBase(t *testing.T) {
	doc, err := Load([]byte(base), noEnv)
	require.NoError(t, err)
	require.Len(t, doc.Accelerators, 1)
	l := doc.Accelerators[0].Listeners[0]
	require.Equal(t, PortRange{From: 80, To: 80}, l.PortRanges[0])
	require.Equal(t, 340*time.Second, l.IdleTimeout)
	require.Equal(t, 30*time.Second, doc.Accelerators[0].Listeners[1].IdleTimeout)
}

func TestLoadBroken(t *testing.T) {
	l0 := "accelerators[0].listeners[0]"
	l1 := "accelerators[0].listeners[1]"
	g0 := l0 + ".endpoint_groups[0]"
	hc := g0 + ".health_check"
	bgp := "topology.pops[0].bgp"
	cases := []struct {
		name  string
		edits []string
		want  []string // substrings that must all appear in the error
	}{
		{"unknown top-level key", []string{"topology:\n", "toplogy: {pki_dir: /x}\ntopology:\n"},
			[]string{`unknown key "toplogy"`}},
		{"unknown nested key", []string{"      - protocol: tcp\n", "      - protocl: tcp\n        protocol: tcp\n"},
			[]string{l0 + `: unknown key "protocl"`}},
		{"unknown deep key", []string{"              path: /healthz\n", "              path: /healthz\n              pth: /x\n"},
			[]string{hc + `: unknown key "pth"`}},
		{"string where a number belongs", []string{"- from: 80", `- from: "abc"`},
			[]string{l0 + `.port_ranges[0].from: expected a number, got "abc"`}},
		{"fractional number", []string{"weight: 100", "weight: 1.5"},
			[]string{g0 + ".endpoints[0].weight: expected a whole number, got 1.5"}},
		{"list where a string belongs", []string{"  - name: web", "  - name: [web]"},
			[]string{"accelerators[0].name: expected a string, got a list"}},
		{"bad duration", []string{"              path: /healthz\n", "              path: /healthz\n              interval: soon\n"},
			[]string{hc + `.interval: expected a duration such as "10s", got "soon"`}},
		{"bare number as duration", []string{"              path: /healthz\n", "              path: /healthz\n              interval: 10\n"},
			[]string{hc + `.interval: expected a duration such as "10s", got 10`}},
		{"asn out of range", []string{"local_asn: 64512", "local_asn: 4294967296"},
			[]string{bgp + ".local_asn: number 4294967296 is out of range"}},
		{"malformed yaml", []string{"            to: 443\n", "            to: [443\n"},
			[]string{"config: yaml: line 9: "}},
		{"duplicate yaml key", []string{"          - from: 53\n", "          - from: 53\n        port_ranges: []\n"},
			[]string{`28:9: ` + l1 + `: key "port_ranges" is given twice in one mapping (first at line 26, column 9)`}},
		{"inverted range", []string{"          - from: 53\n", "          - from: 9000\n            to: 8000\n"},
			[]string{l1 + ".port_ranges[0]: from 9000 is above to 8000"}},
		{"port out of range", []string{"- from: 80", "- from: 70000"},
			[]string{l0 + ".port_ranges[0].from: 70000 is outside 1–65535"}},
		{"overlapping ports same protocol", []string{"      - protocol: udp", "      - protocol: tcp", "- from: 53", "- from: 440\n            to: 450"},
			[]string{l1 + ".port_ranges[0]: tcp port 443 is also used by " + l0 + ".port_ranges[1]"}},
		{"flow logs out of range", []string{"    - name: pop-a\n", "    - name: pop-a\n      flow_logs: {enabled: true, sample_rate: 1.5, queue_size: -1, max_size_mb: 10, max_files: 0}\n"},
			[]string{"topology.pops[0].flow_logs.sample_rate: 1.5 is outside (0, 1]", "topology.pops[0].flow_logs.queue_size: -1 is outside 1–16777216",
				"topology.pops[0].flow_logs.max_size_mb: standard output (path \"-\") cannot be rotated"}},
		{"bad fec mode", []string{"    - name: pop-a\n", "    - name: pop-a\n      backbone: {fec: on, fec_min_rtt: -1s}\n"},
			[]string{`topology.pops[0].backbone.fec: "on" is neither "auto" nor "off"`, "topology.pops[0].backbone.fec_min_rtt: -1s is negative"}},
		{"bad retire mode", []string{"    - name: pop-a\n", "    - name: pop-a\n      backbone: {retire: never}\n"},
			[]string{`topology.pops[0].backbone.retire: "never" is neither "auto" nor "off"`}},
		{"weight 256", []string{"weight: 100", "weight: 256"},
			[]string{g0 + ".endpoints[0].weight: 256 is outside 0–255"}},
		{"weight -1", []string{"weight: 100", "weight: -1"},
			[]string{g0 + ".endpoints[0].weight: -1 is outside 0–255"}},
		{"traffic dial 101", []string{"traffic_dial: 50", "traffic_dial: 101"},
			[]string{l1 + ".endpoint_groups[0].traffic_dial: 101 is outside 0–100"}},
		{"duplicate endpoint id", []string{"id: us-dns-1", "id: eu-2"},
			[]string{l1 + `.endpoint_groups[0].endpoints[0].id: duplicate id "eu-2" (first at ` + g0 + ".endpoints[1])"}},
		{"bad endpoint id", []string{"id: eu-1", "id: -eu"},
			[]string{g0 + `.endpoints[0].id: "-eu" must be`}},
		{"bad endpoint address", []string{"198.18.10.2:8443", "198.18.10.2:99999"},
			[]string{g0 + `.endpoints[1].address: port "99999"`}},
		{"group names a missing region", []string{"region: us\n", "region: ap\n"},
			[]string{l1 + `.endpoint_groups[0].region: "ap" is not a region of topology.regions (regions: eu, us)`}},
		{"two groups in one region", []string{"region: us\n", "region: us\n          - region: us\n"},
			[]string{l1 + `.endpoint_groups[1].region: "us" already has a group in this listener`}},
		{"health check protocol", []string{"protocol: http", "protocol: icmp"},
			[]string{hc + `.protocol: must be "tcp", "http", "https" or "dns", got "icmp"`}},
		{"health check timeout above interval", []string{"path: /healthz\n", "path: /healthz\n              interval: 2s\n              timeout: 3s\n"},
			[]string{hc + ".timeout: 3s is above interval 2s"}},
		{"health check interval too short", []string{"path: /healthz\n", "path: /healthz\n              interval: 500ms\n              timeout: 100ms\n"},
			[]string{hc + ".interval: 500ms is below 1s"}},
		{"health check thresholds and codes", []string{"path: /healthz\n", "path: /healthz\n              healthy_threshold: 11\n              status_codes: 200-700\n              dns_type: BOGUS\n              dns_rcode: MAYBE\n"},
			[]string{hc + ".status_codes: \"200-700\" is not a range within 100–599", hc + ".healthy_threshold: 11 is outside 1–10",
				hc + `.dns_type: "BOGUS" is not a DNS record type`, hc + `.dns_rcode: "MAYBE" is not a DNS response code`}},
		{"port override outside ranges", []string{"listener_port: 80", "listener_port: 81"},
			[]string{g0 + ".port_overrides[0].listener_port: 81 is not in any of the listener's port ranges"}},
		{"bad protocol", []string{"protocol: tcp", "protocol: sctp"},
			[]string{l0 + `.protocol: must be "tcp" or "udp", got "sctp"`}},
		{"bad client affinity", []string{"      - protocol: tcp\n", "      - protocol: tcp\n        client_affinity: sticky\n"},
			[]string{l0 + `.client_affinity: must be "none" or "source_ip", got "sticky"`}},
		{"bad early data", []string{"      - protocol: tcp\n", "      - protocol: tcp\n        early_data: sometimes\n"},
			[]string{l0 + `.early_data: must be "off", "tls" or "always", got "sometimes"`}},
		{"early data on udp", []string{"      - protocol: udp\n", "      - protocol: udp\n        early_data: always\n"},
			[]string{l1 + ".early_data: applies to tcp listeners only"}},
		{"tls on udp", []string{"      - protocol: udp\n", "      - protocol: udp\n        tls: {certificates: [{cert_file: a.crt, key_file: a.key}]}\n"},
			[]string{l1 + ".tls: applies to tcp listeners only"}},
		{"tls without certificates", []string{"      - protocol: tcp\n", "      - protocol: tcp\n        tls: {alpn: [h2]}\n"},
			[]string{l0 + ".tls.certificates: at least one certificate is required"}},
		{"tls certificate fields and alpn", []string{"      - protocol: tcp\n", "      - protocol: tcp\n        tls: {certificates: [{cert_file: a.crt}], alpn: [h2, h2], handshake_timeout: 10m}\n"},
			[]string{l0 + ".tls.certificates[0].key_file: required", l0 + `.tls.alpn: alpn[1]: "h2" is listed twice`,
				l0 + ".tls.handshake_timeout: 10m0s is outside 100ms to 5m"}},
		{"address not an ip", []string{"[203.0.113.10,", "[203.0.113.300,"},
			[]string{`accelerators[0].ip_addresses[0]: "203.0.113.300" is not an IP address`}},
		{"prefix covers nothing", []string{"203.0.113.0/24", "198.51.100.0/24"},
			[]string{"accelerators[0].prefixes[0]: 198.51.100.0/24 covers none", "accelerators[0].ip_addresses[0]: 203.0.113.10 is not covered"}},
		{"no endpoint groups", []string{"        endpoint_groups:\n          - region: us\n            traffic_dial: 50\n            health_check: {protocol: dns}\n            endpoints:\n              - {id: us-dns-1, address: dns1.example.net}\n", ""},
			[]string{l1 + ".endpoint_groups: at least one endpoint group is required"}},
		{"node name used twice", []string{"    - name: us\n", "    - name: pop-a\n"},
			[]string{`topology.regions[1].name: duplicate node name "pop-a" (first at topology.pops[0].name)`}},
		{"admin not loopback", []string{"    - name: pop-a\n", "    - name: pop-a\n      admin: 198.18.0.1:9180\n"},
			[]string{`topology.pops[0].admin: "198.18.0.1:9180" must be on a loopback address`}},
		{"remote admin not host:port", []string{"    - name: pop-a\n", "    - name: pop-a\n      remote_admin: 198.18.0.1\n"},
			[]string{`topology.pops[0].remote_admin: "198.18.0.1" is not host:port`}},
		{"remote admin same as admin", []string{"    - name: pop-a\n", "    - name: pop-a\n      admin: 127.0.0.1:9180\n      remote_admin: 127.0.0.1:9180\n"},
			[]string{`topology.pops[0].remote_admin: "127.0.0.1:9180" is also the loopback admin address; the remote one needs its own port`}},
		{"keepalive not below idle", []string{"    - name: pop-a\n", "    - name: pop-a\n      backbone:\n        keepalive_period: 5s\n"},
			[]string{"topology.pops[0].backbone.keepalive_period: 5s is not below idle_timeout 3s"}},
		{"udp per source above max", []string{"    - name: pop-a\n", "    - name: pop-a\n      udp:\n        max_flows: 10\n        max_flows_per_source: 20\n"},
			[]string{"topology.pops[0].udp.max_flows_per_source: 20 is above max_flows 10"}},
		{"bad listen", []string{"listen: 198.18.1.1:4433", "listen: nowhere"},
			[]string{`topology.regions[0].backbone.listen: "nowhere" is not host:port`}},
		{"bgp neighbor not an ip", []string{"address: 198.18.0.254", "address: router1"},
			[]string{bgp + `.neighbors[0].address: "router1" is not an IP address`}},
		{"bgp as_trans", []string{"local_asn: 64512", "local_asn: 23456"},
			[]string{bgp + ".local_asn: 23456 is AS_TRANS"}},
		{"bgp router id ipv6", []string{"router_id: 198.18.0.1", `router_id: "2001:db8::1"`},
			[]string{bgp + `.router_id: 2001:db8::1 is not an IPv4 address`}},
		{"bgp timers and communities", []string{"            peer_asn: 64600\n", "            peer_asn: 0\n            hold_time: 2s\n            multihop: 300\n", `["64512:100"]`, `["64512:70000"]`},
			[]string{bgp + ".neighbors[0].peer_asn: 0 is not a valid AS number", bgp + ".neighbors[0].hold_time: 2s is below 3s",
				bgp + ".neighbors[0].multihop: 300 is outside 0–255", bgp + `.communities[0]: "64512:70000" is not "a:b"`}},
		{"bgp ttl security with multihop", []string{"            peer_asn: 64600\n", "            peer_asn: 64600\n            multihop: 2\n            ttl_security: true\n"},
			[]string{bgp + ".neighbors[0].ttl_security: only for a directly connected neighbor (multihop 0), not with multihop 2"}},
		{"bgp keepalive not below hold", []string{"            peer_asn: 64600\n", "            peer_asn: 64600\n            hold_time: 6s\n            keepalive: 6s\n"},
			[]string{bgp + ".neighbors[0].keepalive: 6s must be below hold_time 6s"}},
		{"duplicate accelerator name", []string{"accelerators:\n", "accelerators:\n  - name: web\n    ip_addresses: [203.0.113.20]\n    listeners: [{protocol: tcp, port_ranges: [{from: 80}], endpoint_groups: [{region: eu}]}]\n"},
			[]string{`accelerators[1].name: duplicate name "web" (first at accelerators[0].name)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := edit(t, base, tc.edits...)
			_, err := Load([]byte(doc), noEnv)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	require.GreaterOrEqual(t, len(cases), 20)
}

func TestLoadDecodeErrorsCollected(t *testing.T) {
	doc := edit(t, base,
		"- from: 80", `- from: "abc"`,
		"weight: 100", "weight: many",
		"      - protocol: tcp\n", "      - protocl: tcp\n        protocol: tcp\n",
	)
	_, err := Load([]byte(doc), noEnv)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 3, err.Error())
	// Document order: the listener's unknown key, then its port range, then
	// the endpoint's weight.
	require.Equal(t, "accelerators[0].listeners[0]", ve.Problems[0].Path)
	require.Equal(t, "accelerators[0].listeners[0].port_ranges[0].from", ve.Problems[1].Path)
	require.Equal(t, "accelerators[0].listeners[0].endpoint_groups[0].endpoints[0].weight", ve.Problems[2].Path)
}

func TestValidateCollectsEveryProblem(t *testing.T) {
	doc := edit(t, base,
		"weight: 100", "weight: 300",
		"traffic_dial: 50", "traffic_dial: 101",
		"region: us\n", "region: nowhere\n",
		"local_asn: 64512", "local_asn: 0",
	)
	_, err := Load([]byte(doc), noEnv)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.GreaterOrEqual(t, len(ve.Problems), 3)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, len(ve.Problems))
	for i := 1; i < len(ve.Problems); i++ {
		a, b := ve.Problems[i-1], ve.Problems[i]
		require.LessOrEqual(t, [2]int{a.Line, a.Column}[0]*1000+a.Column, b.Line*1000+b.Column, "not in document order:\n%s", err)
	}
}

func TestLoadFile(t *testing.T) {
	_, err := LoadFile("testdata/does-not-exist.yaml", noEnv)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestExampleGlobalIsValid(t *testing.T) {
	doc, err := LoadFile("../../configs/example-global.yaml", noEnv)
	require.NoError(t, err)
	require.Len(t, doc.Topology.PoPs, 2)
	require.Len(t, doc.Topology.Regions, 2)
	for _, name := range []string{"pop-fra", "pop-sfo", "eu-central", "us-west"} {
		_, err := doc.Node(name)
		require.NoError(t, err, name)
	}
}

func TestEnvOverride(t *testing.T) {
	doc, err := Load([]byte(base), LoadOptions{Env: []string{"ANYEDGE_TOPOLOGY_PKI_DIR=/srv/pki", "ANYEDGE_NODE=x", "PATH=/bin"}})
	require.NoError(t, err)
	require.Equal(t, "/srv/pki", doc.Topology.PKIDir)

	// The environment wins over the file too.
	withDir := edit(t, base, "topology:\n", "topology:\n  pki_dir: /from/file\n")
	doc, err = Load([]byte(withDir), LoadOptions{Env: []string{"ANYEDGE_TOPOLOGY_PKI_DIR=/srv/pki"}})
	require.NoError(t, err)
	require.Equal(t, "/srv/pki", doc.Topology.PKIDir)

	doc, err = Load([]byte(withDir), noEnv)
	require.NoError(t, err)
	require.Equal(t, "/from/file", doc.Topology.PKIDir)
}

func TestEnvOverrideFromProcess(t *testing.T) {
	t.Setenv("ANYEDGE_TOPOLOGY_PKI_DIR", "/proc-env/pki")
	doc, err := Load([]byte(base), LoadOptions{})
	require.NoError(t, err)
	require.Equal(t, "/proc-env/pki", doc.Topology.PKIDir)
}

func TestNode(t *testing.T) {
	doc, err := Load([]byte(base), noEnv)
	require.NoError(t, err)

	n, err := doc.Node("pop-a")
	require.NoError(t, err)
	require.Equal(t, RolePoP, n.Role)
	require.Same(t, &doc.Topology.PoPs[0], n.PoP)

	n, err = doc.Node("us")
	require.NoError(t, err)
	require.Equal(t, RoleRegion, n.Role)
	require.Equal(t, "198.18.2.1:4433", n.Region.Backbone.Address)

	require.Equal(t, []string{"eu", "us", "pop-a"}, doc.NodeNames())

	_, err = doc.Node("pop-x")
	require.EqualError(t, err, `--node "pop-x" names no pop or region (pops: pop-a; regions: eu, us)`)

	empty := &Document{}
	_, err = empty.Node("a")
	require.EqualError(t, err, `--node "a" names no pop or region (pops: none; regions: none)`)
}

func TestEndpointByID(t *testing.T) {
	doc, err := Load([]byte(base), noEnv)
	require.NoError(t, err)
	acc, l, g, e, ok := doc.EndpointByID("us-dns-1")
	require.True(t, ok)
	require.Equal(t, "web", acc.Name)
	require.Equal(t, "udp", l.Protocol)
	require.Equal(t, "us", g.Region)
	require.Equal(t, "dns1.example.net", e.Address)
	_, _, _, _, ok = doc.EndpointByID("nope")
	require.False(t, ok)
}

func TestValidationErrorIsTyped(t *testing.T) {
	_, err := Load([]byte("accelerators: []\n"), noEnv)
	var ve *ValidationError
	require.True(t, errors.As(err, &ve))
	require.Contains(t, err.Error(), "accelerators: at least one accelerator is required")
	require.Contains(t, err.Error(), "topology: at least one pop or region is required")
}

// repoDocs returns every YAML document under testdata/ and configs/, by
// file name.
func repoDocs(t testing.TB) map[string][]byte {
	docs := make(map[string][]byte)
	for _, pattern := range []string{"testdata/*.yaml", "../../configs/*.yaml", "../../configs/testdata/*.yaml"} {
		files, err := filepath.Glob(pattern)
		require.NoError(t, err)
		for _, name := range files {
			b, err := os.ReadFile(name)
			require.NoError(t, err)
			docs[name] = b
		}
	}
	return docs
}

// FuzzLoad feeds the decoder arbitrary bytes (seeds: testdata/fuzz/FuzzLoad,
// every YAML file under testdata/ and configs/, and the documents above).
// It must never panic, every problem it reports must have a place in the
// text when the text has a YAML root, and what it accepts must stay valid.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(strings.Replace(base, "accelerators:\n", customAccel, 1)))
	for _, b := range repoDocs(f) {
		f.Add(b)
	}
	f.Add([]byte("accelerators: 5\ntopology: x\n"))
	f.Add([]byte("topology:\n  pops: [{name: a, bgp: {neighbors: [{}]}}]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("{1: 2}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse(data, LoadOptions{Env: []string{"ANYEDGE_TOPOLOGY_PKI_DIR=/x"}})
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				require.LessOrEqual(t, len(ve.Problems), MaxProblems)
				root, perr := parseYAML(data)
				require.NoError(t, perr, "a ValidationError comes from a parsed document")
				for _, p := range ve.Problems {
					if root != nil {
						require.Positive(t, p.Line, "problem without a line: %s", p)
					}
					require.LessOrEqual(t, len(p.Msg), maxMsgLen+len("…"))
				}
			}
			return
		}
		require.Equal(t, RevisionOf(data), l.Revision)
		// A valid document stays valid and unchanged under defaults.
		again := l.Doc.WithDefaults()
		require.NoError(t, again.Validate())
		require.Equal(t, *l.Doc, again)
	})
}
