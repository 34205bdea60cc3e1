package config

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// schemaKeys lists every key of the schema as written in the reference,
// e.g. "accelerators[].listeners[].port_ranges[].from".
func schemaKeys(prefix string, t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		path := tag
		if prefix != "" {
			path = prefix + "." + tag
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, path)
			keys = append(keys, schemaKeys(path+"[]", ft.Elem())...)
		case ft.Kind() == reflect.Struct && ft != durationType:
			keys = append(keys, path)
			keys = append(keys, schemaKeys(path, ft)...)
		default:
			keys = append(keys, path)
		}
	}
	return keys
}

// TestReferenceCoversSchema fails when a schema key is missing from
// README.md, so that the reference cannot drift.
func TestReferenceCoversSchema(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, doc, ok := strings.Cut(string(b), "\n## Configuration reference\n")
	require.True(t, ok, "README.md has no Configuration reference section")
	doc, _, _ = strings.Cut(doc, "\n## ")
	keys := schemaKeys("", reflect.TypeFor[Document]())
	require.NotEmpty(t, keys)
	for _, k := range keys {
		require.Contains(t, doc, "| `"+k+"` |", "README.md has no row for %s", k)
	}
	// And the other way round: every row names a real key.
	known := make(map[string]bool)
	for _, k := range keys {
		known[k] = true
	}
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		k, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
		require.True(t, known[k], "README.md documents unknown key %s", k)
	}
}
