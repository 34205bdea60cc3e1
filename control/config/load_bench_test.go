package config

import (
	"fmt"
	"strings"
	"testing"
)

// benchSize is the size of the documents of BenchmarkLoad5MB.
const benchSize = 5 << 20

// bigDoc repeats item (a format with one %d, an accelerator list item)
// until the document is at least size bytes; the topology has one PoP and
// one region r.
func bigDoc(size int, item string) []byte {
	var b strings.Builder
	b.Grow(size + 4096)
	b.WriteString("accelerators:\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, item, i)
	}
	b.WriteString("topology:\n  pops: [{name: p}]\n  regions: [{name: r, backbone: {listen: \"127.0.0.1:7000\"}}]\n")
	return []byte(b.String())
}

// benchDocs are the shapes of BenchmarkLoad5MB: misspelt keys at three
// depths, values of the wrong type, values that fail validation, keys
// given twice at four depths, and a valid document of the same size for
// comparison.
var benchDocs = []struct{ name, item string }{
	{"unknown-keys-everywhere", `  - name: acc-%[1]d
    ip_addresses: [203.0.113.1]
    typo_key: 1
    listeners:
      - protocol: tcp
        protocl: tcp
        port_ranges: [{from: 80}]
        endpoint_groups:
          - region: r
            endpoints:
              - {id: e-%[1]d, address: 198.18.0.1, wieght: 5}
`},
	{"type-errors", `  - name: acc-%[1]d
    ip_addresses: 203.0.113.1
    listeners:
      - protocol: tcp
        port_ranges: [{from: "eighty"}]
        endpoint_groups:
          - region: r
            endpoints:
              - {id: e-%[1]d, address: 198.18.0.1, weight: many}
`},
	{"invalid-values", `  - name: acc-%[1]d
    ip_addresses: [203.0.113.300]
    listeners:
      - protocol: sctp
        port_ranges: [{from: 70000}]
        endpoint_groups:
          - region: nowhere
            endpoints:
              - {id: e-%[1]d, address: 198.18.0.1, weight: 300}
`},
	{"duplicate-keys", `  - name: acc-%[1]d
    name: acc-%[1]d
    ip_addresses: ["2001:db8::%[1]x"]
    listeners:
      - protocol: tcp
        protocol: tcp
        port_ranges: [{from: 80, from: 80}]
        endpoint_groups:
          - region: r
            region: r
            endpoints:
              - {id: e-%[1]d, address: 198.18.0.1, weight: 5, weight: 5}
`},
	{"valid", `  - name: acc-%[1]d
    ip_addresses: ["2001:db8::%[1]x"]
    listeners:
      - protocol: tcp
        port_ranges: [{from: 80}]
        endpoint_groups:
          - region: r
            endpoints:
              - {id: e-%[1]d, address: 198.18.0.1, weight: 5}
`},
}

// flatDoc is one mapping (the root, or topology when nested) of size bytes
// of unknown keys.
func flatDoc(size int, nested bool) []byte {
	var b strings.Builder
	b.Grow(size + 64)
	indent := ""
	if nested {
		b.WriteString("topology:\n")
		indent = "  "
	}
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%sunknown_key_%d: value\n", indent, i)
	}
	return []byte(b.String())
}

// wideDoc is one accelerator of size bytes whose lists are long: what a
// validator that compares items pairwise would take the square of.
// shape is "listeners" (listeners of one protocol, one port each, some
// shared), "prefixes" (addresses and prefixes that cover none of them) or
// "overrides" (port ranges and port overrides of one listener).
func wideDoc(size int, shape string) []byte {
	var b strings.Builder
	b.Grow(size + 4096)
	b.WriteString("accelerators:\n  - name: a\n")
	end := "topology: {pops: [{name: p}], regions: [{name: r, backbone: {listen: \"127.0.0.1:7000\"}}]}\n"
	switch shape {
	case "listeners":
		b.WriteString("    ip_addresses: [203.0.113.1]\n    listeners:\n")
		for i := 0; b.Len() < size; i++ {
			fmt.Fprintf(&b, "      - {protocol: tcp, port_ranges: [{from: %d}], endpoint_groups: [{region: r}]}\n", 1+i%60000)
		}
	case "prefixes":
		b.WriteString("    ip_addresses:\n")
		for i := 0; b.Len() < size/2; i++ {
			fmt.Fprintf(&b, "      - \"2001:db8::%x\"\n", i)
		}
		b.WriteString("    prefixes:\n")
		for i := 0; b.Len() < size; i++ {
			fmt.Fprintf(&b, "      - \"2001:db8:%x::/48\"\n", i+1)
		}
		b.WriteString("    listeners: [{protocol: tcp, port_ranges: [{from: 80}], endpoint_groups: [{region: r}]}]\n")
	case "overrides":
		b.WriteString("    ip_addresses: [203.0.113.1]\n    listeners:\n      - protocol: tcp\n        port_ranges:\n")
		for i := 0; b.Len() < size/2; i++ {
			fmt.Fprintf(&b, "          - {from: %d}\n", 1+2*(i%30000))
		}
		b.WriteString("        endpoint_groups:\n          - region: r\n            port_overrides:\n")
		for i := 0; b.Len() < size; i++ {
			fmt.Fprintf(&b, "              - {listener_port: %d, endpoint_port: 1}\n", 1+i%60000)
		}
	}
	b.WriteString(end)
	return []byte(b.String())
}

// BenchmarkLoad5MB loads 5 MB documents full of mistakes (and one without),
// and documents with very long lists: the time to report them must stay
// linear in the size. See BENCHMARKS.md
// ("Config") and bench/config.sh, which also measures peak memory.
func BenchmarkLoad5MB(b *testing.B) {
	type doc struct {
		name string
		gen  func() []byte
	}
	docs := []doc{
		{"flat-unknown-keys", func() []byte { return flatDoc(benchSize, false) }},
		{"nested-unknown-keys", func() []byte { return flatDoc(benchSize, true) }},
	}
	for _, d := range benchDocs {
		docs = append(docs, doc{d.name, func() []byte { return bigDoc(benchSize, d.item) }})
	}
	for _, shape := range []string{"listeners", "prefixes", "overrides"} {
		docs = append(docs, doc{"wide-" + shape, func() []byte { return wideDoc(benchSize, shape) }})
	}
	for _, d := range docs {
		b.Run(d.name, func(b *testing.B) {
			data := d.gen()
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				_, err := Load(data, noEnv)
				if (err == nil) != (d.name == "valid") {
					b.Fatalf("unexpected result: %.300v", err)
				}
			}
		})
	}
}
