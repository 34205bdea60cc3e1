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
// depths, values of the wrong type, values that fail validation, and a
// valid document of the same size for comparison.
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

// BenchmarkLoad5MB loads 5 MB documents full of mistakes (and one without):
// the time to report them must stay linear in the size. See BENCHMARKS.md
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
