package config

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// problemsOf loads doc and returns its problems; the load must fail with a
// *ValidationError.
func problemsOf(t *testing.T, doc string) []Problem {
	t.Helper()
	_, err := Load([]byte(doc), noEnv)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve, "%v", err)
	return ve.Problems
}

// rendered returns the String of each problem.
func rendered(ps []Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// requireProblem fails unless ps has a problem with exactly this rendering.
func requireProblem(t *testing.T, ps []Problem, want string) {
	t.Helper()
	got := rendered(ps)
	if !slices.Contains(got, want) {
		t.Fatalf("no problem %q in:\n%s", want, strings.Join(got, "\n"))
	}
}

// TestKeysAreExact: keys differing only in case are unknown keys, with a
// hint, at their line and column.
func TestKeysAreExact(t *testing.T) {
	ps := problemsOf(t, edit(t, base,
		"accelerators:\n", "Accelerators:\n",
	))
	requireProblem(t, ps, `1:1: unknown key "Accelerators" (keys are lower case: "accelerators")`)

	ps = problemsOf(t, edit(t, base,
		"    ip_addresses: [", "    IP_Addresses: [",
	))
	requireProblem(t, ps, `3:5: accelerators[0]: unknown key "IP_Addresses" (keys are lower case: "ip_addresses")`)
	// The accelerator then has no addresses: validation says so too.
	requireProblem(t, ps, "2:5: accelerators[0].ip_addresses: at least one address is required")
}

// TestDuplicateKeys: a key given twice in one mapping is refused, exact or
// in another case (which is an unknown key), and neither value silently
// wins.
func TestDuplicateKeys(t *testing.T) {
	ps := problemsOf(t, edit(t, base, "  - name: web\n", "  - name: web\n    name: shop\n"))
	requireProblem(t, ps, `3:5: accelerators[0]: key "name" is given twice in one mapping (first at line 2, column 5)`)

	ps = problemsOf(t, edit(t, base, "  - name: web\n", "  - name: web\n    NAME: shop\n"))
	requireProblem(t, ps, `3:5: accelerators[0]: unknown key "NAME" (keys are lower case: "name")`)

	// In a flow mapping too.
	ps = problemsOf(t, edit(t, base, "listen: 198.18.1.1:4433", "{listen: 198.18.1.1:4433, listen: 198.18.1.2:4433}"))
	require.Len(t, ps, 1)
	require.Equal(t, "topology.regions[0].backbone", ps[0].Path)
	require.Contains(t, ps[0].Msg, `key "listen" is given twice`)
}

// TestEveryProblemAtOnce: a value of the wrong type does not hide the other
// problems of the document; each comes with its path, line and column, in
// document order.
func TestEveryProblemAtOnce(t *testing.T) {
	ps := problemsOf(t, edit(t, base,
		"weight: 100", "weight: many",
		"traffic_dial: 50", "traffic_dial: 101",
		"local_asn: 64512", "local_asn: 0",
	))
	got := rendered(ps)
	require.Equal(t, []string{
		`22:25: accelerators[0].listeners[0].endpoint_groups[0].endpoints[0].weight: expected a number, got "many"`,
		"30:27: accelerators[0].listeners[1].endpoint_groups[0].traffic_dial: 101 is outside 0–100",
		"38:20: topology.pops[0].bgp.local_asn: 0 is not a valid AS number",
	}, got)
}

// TestProblemsHavePositions: every kind of problem carries the line and
// column of what it is about.
func TestProblemsHavePositions(t *testing.T) {
	doc := edit(t, base,
		"  - name: web\n", "  - name: [web]\n",
		"      - protocol: tcp\n", "      - protocl: tcp\n        protocol: tcp\n",
		"weight: 100", "weight: 300",
		"health_check: {protocol: dns}", "health_check: {protocol: dns, interval: 2s, timeout: 3s}",
		"local_asn: 64512", "local_asn: 0",
	)
	ps := problemsOf(t, doc)
	want := []string{
		"2:11: accelerators[0].name: expected a string, got a list",
		`6:9: accelerators[0].listeners[0]: unknown key "protocl" (did you mean "protocol"?)`,
		"23:25: accelerators[0].listeners[0].endpoint_groups[0].endpoints[0].weight: 300 is outside 0–255",
		// A value the document gives: its own place.
		"32:66: accelerators[0].listeners[1].endpoint_groups[0].health_check.timeout: 3s is above interval 2s",
		"39:20: topology.pops[0].bgp.local_asn: 0 is not a valid AS number",
	}
	got := rendered(ps)
	require.Equal(t, want, got)

	// A value the document leaves out: the nearest enclosing value.
	ps = problemsOf(t, edit(t, base, "    - name: pop-a\n", "    - admin: 127.0.0.1:1\n"))
	requireProblem(t, ps, "36:7: topology.pops[0].name: required")
}

// TestTypeErrors: the strict rules for scalars.
func TestTypeErrors(t *testing.T) {
	hc := "accelerators[0].listeners[0].endpoint_groups[0].health_check"
	for _, tc := range []struct{ edit, want string }{
		{"path: /healthz", hc + `.path: expected a string, got the number 1.5 (quote it: "1.5")`},
		{"path: true", hc + ".path: expected a string, got true"},
		{"interval: 10", hc + `.interval: expected a duration such as "10s", got 10`},
		{"interval: 0", ""},
		{"interval: 1m", ""},
		{"insecure_skip_verify: yes", hc + `.insecure_skip_verify: expected true or false, got "yes"`},
		{"insecure_skip_verify: TRUE", ""},
		{"port: 0x1F90", ""},
		{"port: 8_080", ""},
		{"port: 80.0", ""},
		{"port: 8e3", ""},
		{"port: 1e400", hc + `.port: expected a number, got "1e400"`},
		{"port: 99999999999999999999", hc + ".port: number 99999999999999999999 is out of range"},
		{"port: .inf", hc + ".port: expected a whole number, got .inf"},
		{"status_codes: 204", ""},
		{"host: 2024-01-02", ""},
		{"port: !custom 8080", hc + ".port: the YAML tag !custom is not supported here"},
		{"port: [8080]", hc + ".port: expected a number, got a list"},
		{"port: {a: 1}", hc + ".port: expected a number, got a mapping"},
		{"port: ~", ""},
	} {
		t.Run(tc.edit, func(t *testing.T) {
			doc := edit(t, base, "              path: /healthz\n", "              path: /healthz\n              "+tc.edit+"\n")
			if strings.HasPrefix(tc.edit, "path:") {
				doc = edit(t, base, "path: /healthz", tc.edit)
				if tc.edit == "path: /healthz" {
					doc = edit(t, base, "path: /healthz", "path: 1.5")
				}
			}
			_, err := Load([]byte(doc), noEnv)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestNotYAMLText: binary data, text that is not UTF-8, a second document
// and a root that is not a mapping are refused with their position.
func TestNotYAMLText(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want string
	}{
		{"nul byte", "accelerators: []\ntopology:\x00\n", "config: line 2, column 10: control character U+0000"},
		{"latin-1", "accelerators:\n  - name: caf\xe9\n", "config: line 2, column 14: byte 0xe9 is not UTF-8 text"},
		{"gzip", "\x1f\x8b\x08\x00\x00\x00", "config: line 1, column 1: control character U+001F"},
		{"second document", "topology: {}\n---\ntopology: {}\n", "config: line 2: a second YAML document"},
		{"list root", "- a\n- b\n", "1:1: the document must be a mapping of keys (accelerators, topology, …), got a list"},
		{"scalar root", "hello\n", "1:1: the document must be a mapping of keys (accelerators, topology, …), got \"hello\""},
		{"malformed", "accelerators: [\n", "config: yaml: line 1: did not find expected node content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.doc), noEnv)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
	// A byte-order mark and CRLF line ends are text.
	_, err := Load([]byte("\ufeff"+strings.ReplaceAll(base, "\n", "\r\n")), noEnv)
	require.NoError(t, err)
	// An empty document is an empty mapping: validation says what it lacks.
	ps := problemsOf(t, "")
	requireProblem(t, ps, "accelerators: at least one accelerator is required")
	ps = problemsOf(t, "# nothing\n")
	requireProblem(t, ps, "accelerators: at least one accelerator is required")
}

// TestAnchorsAndMerges: anchors, aliases and merge keys work, are checked
// like any value, and cannot blow a small text up into a huge document.
func TestAnchorsAndMerges(t *testing.T) {
	doc := edit(t, base,
		"            health_check:\n              protocol: http\n", "            health_check: &hc\n              protocol: http\n",
		"            health_check: {protocol: dns}\n", "            health_check:\n              <<: *hc\n              path: /other\n",
	)
	d, err := Load([]byte(doc), noEnv)
	require.NoError(t, err)
	hc := d.Accelerators[0].Listeners[1].EndpointGroups[0].HealthCheck
	require.Equal(t, "http", hc.Protocol, "merged")
	require.Equal(t, "/other", hc.Path, "the mapping's own key wins")

	// A misspelt key inside a merged mapping is reported where it is.
	doc = edit(t, doc, "              path: /healthz\n", "              path: /healthz\n              pth: /x\n")
	ps := problemsOf(t, doc)
	requireProblem(t, ps, `16:15: accelerators[0].listeners[0].endpoint_groups[0].health_check: unknown key "pth" (did you mean "path"?)`)

	// A mapping that merges itself.
	_, err = Load([]byte("topology: &t {<<: *t, pki_dir: /x}\n"), noEnv)
	require.Error(t, err)
}

// TestAliasBudget: a document whose aliases expand it past its budget is
// refused with a clear message rather than decoded.
func TestAliasBudget(t *testing.T) {
	// Thirty aliases at each of four levels of lists: 810,000 endpoints
	// from 1 KB of text.
	item := func(anchor, body string) string {
		return "&" + anchor + " " + body + strings.Repeat(", *"+anchor, 29)
	}
	doc := "accelerators: [" + item("a", "{name: a, listeners: ["+
		item("l", "{protocol: tcp, endpoint_groups: ["+
			item("g", "{region: r, endpoints: ["+
				item("e", "{id: x, address: 198.18.0.1}")+"]}")+"]}")+"]}") + "]\n"
	require.Less(t, len(doc), 2000)
	ps := problemsOf(t, doc)
	requireProblem(t, ps, "1:1: the document expands to too many values through aliases (&anchor, *alias)")
}

// TestProblemsAreBounded: a document with more problems than MaxProblems
// lists the first ones and counts the rest.
func TestProblemsAreBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("topology:\n")
	for i := range 3 * MaxProblems {
		fmt.Fprintf(&b, "  k%d: %s\n", i, strings.Repeat("v", 1000))
	}
	_, err := Load([]byte(b.String()), noEnv)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, MaxProblems)
	require.Equal(t, 3*MaxProblems+2, ve.Total(), "every unknown key, and two validation problems")
	require.Equal(t, "1:1: accelerators: at least one accelerator is required", ve.Problems[0].String())
	require.Equal(t, `2:3: topology: unknown key "k0"`, ve.Problems[1].String())
	require.True(t, strings.HasSuffix(err.Error(), fmt.Sprintf("\n… and %d more", ve.Omitted)))

	// Long values are clipped in messages.
	long := strings.Repeat("x", 100000)
	ps := problemsOf(t, edit(t, base, "address: 198.18.10.1", "address: "+long))
	for _, p := range ps {
		require.Less(t, len(p.Msg), maxMsgLen+10)
	}
	ps = problemsOf(t, edit(t, base, "    - name: pop-a\n", "    - name: pop-a\n      "+long[:1000]+": 1\n"))
	require.Less(t, len(ps[0].Msg), 200)
}

// TestEnvOverrideTypes: values from the environment are read like the
// document's, and a bad one is reported with the variable's name.
func TestEnvOverrideTypes(t *testing.T) {
	_, err := Load([]byte(base), LoadOptions{Env: []string{"ANYEDGE_TOPOLOGY_PKI_DIR=true"}})
	require.NoError(t, err, "a string key takes the text as it is")
	doc, err := Load([]byte(base), LoadOptions{Env: []string{"ANYEDGE_TOPOLOGY_PKI_DIR=/srv/x"}})
	require.NoError(t, err)
	require.Equal(t, "/srv/x", doc.Topology.PKIDir)

	// Every scalar key outside lists is overridable, whatever its type.
	keys := envKeys("", reflect.TypeFor[Document]())
	require.NotEmpty(t, keys)
	for _, k := range keys {
		require.Equal(t, k.path, strings.ToLower(k.path))
	}
}

// TestSchemaTags: the mapstructure tags are the only source of key names,
// and viper (which folds key case) may decode them: every field of the
// schema has a lower-case tag, unique in its struct, and no field is a Go
// map (whose keys viper would fold).
func TestSchemaTags(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ == durationType || seen[typ] {
			return
		}
		seen[typ] = true
		names := map[string]bool{}
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() {
				continue
			}
			tag, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			require.NotEmpty(t, tag, "%s.%s has no mapstructure tag", path, f.Name)
			if tag == "-" {
				continue
			}
			require.Equal(t, strings.ToLower(tag), tag, "%s.%s: tags are lower case", path, f.Name)
			require.False(t, names[tag], "%s: key %q twice", path, tag)
			names[tag] = true
			require.NotEqual(t, reflect.Map, f.Type.Kind(), "%s.%s: use a list of named items, not a map", path, f.Name)
			walk(f.Type, path+"."+tag)
		}
	}
	walk(reflect.TypeFor[Document](), "")
}

// TestRevision: the revision follows the bytes.
func TestRevision(t *testing.T) {
	a, err := Parse([]byte(base), noEnv)
	require.NoError(t, err)
	b, err := Parse([]byte(base+"\n# a comment\n"), noEnv)
	require.NoError(t, err)
	require.Len(t, string(a.Revision), 16)
	require.Equal(t, RevisionOf([]byte(base)), a.Revision)
	require.NotEqual(t, a.Revision, b.Revision)
	require.Equal(t, a.Doc, b.Doc)

	_, err = Parse([]byte("accelerators: 5\n"), noEnv)
	require.True(t, errors.As(err, new(*ValidationError)))
}

// TestLargeDocumentPositions: every problem of a large document of
// invalid values gets its place.
func TestLargeDocumentPositions(t *testing.T) {
	data := bigDoc(1<<20, benchDocs[2].item) // invalid values
	_, err := Load(data, noEnv)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, MaxProblems)
	require.Equal(t, `3:20: accelerators[0].ip_addresses[0]: "203.0.113.300" is not an IP address`, ve.Problems[0].String())
	for _, p := range ve.Problems {
		require.Positive(t, p.Line, "%s", p)
	}
}

// TestTypedListsDecodeAsViper: the lists that the strict decoder builds as
// typed values decode to the same Document, with the same problems, as
// plain lists of maps decoded by viper alone, over every document of the
// repository, the benchmark's shapes and the corners of the decoder
// (nulls, wrong items, merges, pointers, empty lists).
func TestTypedListsDecodeAsViper(t *testing.T) {
	docs := map[string][]byte{
		"base":   []byte(base),
		"custom": []byte(strings.Replace(base, "accelerators:\n", customAccel, 1)),
		"flat":   flatDoc(4<<10, false),
		"nested": flatDoc(4<<10, true),
		"corners": []byte(`accelerators:
  - &acc
    name: a
    ip_addresses: [203.0.113.1, ~, 5.5, [x]]
    prefixes: []
    listeners:
      - ~
      - 7
      - protocol: tcp
        port_ranges: [{from: 80}, ~, {from: x}]
        tls: {}
        endpoint_groups:
          - region: r
            traffic_dial: 50
            endpoints: [{id: e, address: 198.18.0.1, weight: 0}, {id: f, address: 198.18.0.2, weight: ~}]
  - <<: *acc
    name: b
  - {name: c, listeners: [{<<: {protocol: udp}, port_ranges: [{from: 53}]}]}
topology: {pops: [{name: p}], regions: [{name: r, backbone: {listen: "127.0.0.1:7000"}}]}
dns: {zones: []}
`),
	}
	maps.Copy(docs, repoDocs(t))
	for _, d := range benchDocs {
		docs[d.name] = bigDoc(4<<10, d.item)
	}
	for _, shape := range []string{"listeners", "prefixes", "overrides"} {
		docs["wide-"+shape] = wideDoc(8<<10, shape)
	}
	env := []string{"ANYEDGE_TOPOLOGY_PKI_DIR=/x"}
	for name, data := range docs {
		root, err := parseYAML(data)
		require.NoError(t, err, name)
		var got [2]Document
		var probs [2]*problems
		for i, plain := range []bool{false, true} {
			d := decoder{probs: new(problems), bad: make(map[string]bool), budget: 1 << 30, plain: plain}
			got[i], err = d.document(root, env)
			require.NoError(t, err, name)
			probs[i] = d.probs
		}
		require.Equal(t, got[1], got[0], name)
		require.Equal(t, probs[1], probs[0], name)
	}
}

// TestFloatValues: a fractional key takes whole and fractional numbers,
// nothing else.
func TestFloatValues(t *testing.T) {
	for in, want := range map[string]string{
		"0.25": "", "1": "", "1e-2": "",
		`"0.5"`: `expected a number, got "0.5"`,
		".nan":  "expected a finite number, got .nan",
		"true":  "expected a number, got true",
	} {
		doc := edit(t, base, "    - name: pop-a\n", "    - name: pop-a\n      flow_logs: {path: /tmp/f.log, sample_rate: "+in+"}\n")
		_, err := Load([]byte(doc), noEnv)
		if want == "" {
			require.NoError(t, err, in)
			continue
		}
		require.ErrorContains(t, err, "topology.pops[0].flow_logs.sample_rate: "+want, in)
	}
}

func TestPortSet(t *testing.T) {
	s := newPortSet([]PortRange{{From: 10, To: 20}, {From: 1, To: 100}, {From: 200, To: 200}, {From: 150, To: 160}})
	for port, want := range map[int]bool{0: false, 1: true, 50: true, 100: true, 101: false, 155: true, 199: false, 200: true, 201: false} {
		require.Equal(t, want, s.has(port), "port %d", port)
	}
	require.False(t, newPortSet(nil).has(1))
}

// TestOverlaps: ports used twice, within a listener and across listeners
// of one protocol (tcp and udp may share a port), each reported once.
func TestOverlaps(t *testing.T) {
	doc := `accelerators:
  - name: a
    ip_addresses: [203.0.113.1]
    listeners:
      - {protocol: tcp, port_ranges: [{from: 1, to: 100}, {from: 50}], endpoint_groups: [{region: r}]}
      - {protocol: udp, port_ranges: [{from: 1, to: 100}], endpoint_groups: [{region: r, health_check: {protocol: dns}}]}
      - {protocol: tcp, port_ranges: [{from: 200}, {from: 90, to: 110}], endpoint_groups: [{region: r}]}
topology: {pops: [{name: p}], regions: [{name: r, backbone: {listen: "127.0.0.1:1"}}]}
`
	require.Equal(t, []string{
		"5:59: accelerators[0].listeners[0].port_ranges[1]: port 50 is also in port_ranges[0] of the same listener",
		"7:52: accelerators[0].listeners[2].port_ranges[1]: tcp port 90 is also used by accelerators[0].listeners[0].port_ranges[0]",
	}, rendered(problemsOf(t, doc)))
}
