package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The strict decoder reads the YAML node tree itself, so that it sees what a
// decoder into maps hides: the case of every key, keys given twice in one
// mapping, and the line and column of every value. It checks the tree
// against the schema (the mapstructure tags of Document and the structs
// under it are the only source of key names) and builds a tree of values of
// exactly the schema's types, which viper then decodes into a Document.
// Nothing reaches viper that has not passed the check, so viper's case
// folding and mapstructure's conversions never change a value.
//
// The mappings outside lists (the root, topology, dns, …) reach viper as
// plain maps, so that environment overrides merge into them. Lists are
// built here as typed Go slices, their items as the schema's structs, and
// mapstructure copies them as they are: decoding a struct from a map costs
// mapstructure time and garbage in proportion to the number of fields of
// the struct's type, set or not (it parses every tag and scans the map's
// keys for each field that is not set), which made it a third of the load
// of a large document (BENCHMARKS.md, "Config").

// MaxDocumentSize is the largest document Load reads, in bytes.
const MaxDocumentSize = 32 << 20

// durationType is the one named type with its own syntax in documents.
var durationType = reflect.TypeFor[time.Duration]()

// field is one key of a schema struct.
type field struct {
	key   string
	typ   reflect.Type
	index []int // for reflect.Value.FieldByIndex
}

// structSchema lists the keys of one schema struct.
type structSchema struct {
	fields map[string]field
	keys   []string // in declaration order, for hints
}

// schemas caches structSchema by struct type.
var schemas sync.Map // reflect.Type → *structSchema

// schemaOf returns the keys of struct type t: the mapstructure tag of each
// field, fields tagged "-" or untagged being no part of the document.
// Embedded structs tagged ",squash" contribute their keys.
func schemaOf(t reflect.Type) *structSchema {
	if s, ok := schemas.Load(t); ok {
		return s.(*structSchema)
	}
	s := &structSchema{fields: make(map[string]field)}
	var add func(t reflect.Type, index []int)
	add = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			at := append(slices.Clip(index), i)
			name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if f.Anonymous && name == "" && strings.Contains(opts, "squash") && f.Type.Kind() == reflect.Struct {
				add(f.Type, at)
				continue
			}
			if name == "" || name == "-" {
				continue
			}
			s.fields[name] = field{key: name, typ: f.Type, index: at}
			s.keys = append(s.keys, name)
		}
	}
	add(t, nil)
	got, _ := schemas.LoadOrStore(t, s)
	return got.(*structSchema)
}

// docPath is a document path built while walking; it is turned into a
// string only when a problem is reported.
type docPath struct {
	parent *docPath
	key    string // "" for a list index
	index  int
}

func (p *docPath) child(key string) *docPath { return &docPath{parent: p, key: key} }
func (p *docPath) item(i int) *docPath       { return &docPath{parent: p, index: i} }

// String renders the path as in "accelerators[0].listeners[1].protocol".
func (p *docPath) String() string {
	if p == nil {
		return ""
	}
	var segs []*docPath
	for q := p; q != nil; q = q.parent {
		segs = append(segs, q)
	}
	var b strings.Builder
	for i := len(segs) - 1; i >= 0; i-- {
		s := segs[i]
		switch {
		case s.key == "":
			fmt.Fprintf(&b, "[%d]", s.index)
		case b.Len() > 0:
			b.WriteByte('.')
			b.WriteString(s.key)
		default:
			b.WriteString(s.key)
		}
	}
	return b.String()
}

// decoder checks a node tree against the schema. It reports into probs and
// remembers in bad the paths of values it dropped, so that validation does
// not report them a second time as missing.
type decoder struct {
	probs  *problems
	bad    map[string]bool
	budget int // nodes still to visit; aliases can multiply a small text
	// plain builds lists as []any of plain maps too, leaving all of the
	// decoding to viper: a test checks that both give the same Document.
	plain bool
}

// errAliasBudget stops a walk that aliases have made too large.
var errAliasBudget = errors.New("the document expands to too many values through aliases (&anchor, *alias)")

// parseYAML reads data as exactly one YAML document and returns its root
// node, nil for an empty document. Text that is not UTF-8, holds control
// characters, or holds a second document is refused with its position.
func parseYAML(data []byte) (*yaml.Node, error) {
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("config: the document is %d bytes; the limit is %d", len(data), MaxDocumentSize)
	}
	if err := checkText(data); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("config: %w", err)
	default:
		return nil, fmt.Errorf("config: line %d: a second YAML document (after ---); a config file holds exactly one", next.Line)
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

// checkText refuses bytes that are not YAML text: invalid UTF-8 and control
// characters other than tab, line feed and carriage return. The YAML
// library would refuse them too, but without saying where.
func checkText(data []byte) error {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return fmt.Errorf("config: line %d, column %d: byte 0x%02x is not UTF-8 text; a config is a YAML text file", line, col, data[i])
		case r == '\n':
			line, col = line+1, 0
		case r == '\t', r == '\r', r == 0xFEFF && i == 0:
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0 && r != 0x85) || r == 0xFFFE || r == 0xFFFF:
			return fmt.Errorf("config: line %d, column %d: control character %U; a config is a YAML text file", line, col, r)
		}
		i += size
		col++
	}
	return nil
}

// decodeTree checks root against the schema of Document and returns the
// plain tree of its values. Problems go to d.probs; values with a problem
// are left out.
func (d *decoder) decodeTree(root *yaml.Node) map[string]any {
	if root == nil {
		return map[string]any{}
	}
	defer func() {
		if r := recover(); r != nil {
			if r != errAliasBudget { //nolint:errorlint // sentinel compared by identity
				panic(r)
			}
			d.probs.addAt("", root.Line, root.Column, "%v", errAliasBudget)
		}
	}()
	if deref(root).Kind != yaml.MappingNode {
		d.probs.addAt("", root.Line, root.Column, "the document must be a mapping of keys (accelerators, topology, …), got %s", describeNode(root))
		return map[string]any{}
	}
	m, _ := d.value(root, reflect.TypeFor[Document](), nil, reflect.Value{})
	out, _ := m.(map[string]any)
	if out == nil {
		out = map[string]any{}
	}
	return out
}

// deref follows aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// fail records a problem with the value n at p and marks p as dropped.
func (d *decoder) fail(p *docPath, n *yaml.Node, format string, args ...any) {
	path := p.String()
	d.bad[path] = true
	d.probs.addAt(path, n.Line, n.Column, format, args...)
}

// value checks n against type t and reports whether n was acceptable.
// With dst (a settable value of type t) it stores the value there, and
// leaves dst as it is for an explicit null, which means "not set".
// Without dst it returns the value, structs as plain map[string]any, nil
// for a null. Lists are always built typed (unless d.plain), and so is
// everything in them.
func (d *decoder) value(n *yaml.Node, t reflect.Type, p *docPath, dst reflect.Value) (any, bool) {
	if d.budget--; d.budget < 0 {
		panic(errAliasBudget)
	}
	at := n // positions are those of the alias, where the value is used
	n = deref(n)
	tag := n.ShortTag()
	if n.Kind == yaml.ScalarNode && tag == "!!null" {
		return nil, true
	}
	if !knownTags[tag] {
		d.fail(p, at, "the YAML tag %s is not supported here", clip(tag))
		return nil, false
	}
	if t.Kind() == reflect.Pointer {
		if !dst.IsValid() {
			return d.value(at, t.Elem(), p, dst)
		}
		ptr := reflect.New(t.Elem())
		_, ok := d.value(at, t.Elem(), p, ptr.Elem())
		if ok {
			dst.Set(ptr)
		}
		return nil, ok
	}
	var v any
	switch {
	case t == durationType:
		var ok bool
		if v, ok = d.duration(n, at, p); !ok {
			return nil, false
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(p, at, "expected a mapping, got %s", describeNode(n))
			return nil, false
		}
		return d.mapping(n, t, p, dst), true
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(p, at, "expected a list, got %s", describeNode(n))
			return nil, false
		}
		if d.plain {
			return d.plainList(n, t, p), true
		}
		out := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		ptrs := t.Elem().Kind() == reflect.Pointer
		for i, item := range n.Content {
			if _, ok := d.value(item, t.Elem(), p.item(i), out.Index(i)); ptrs && (!ok || out.Index(i).IsNil()) {
				// Keep the indexes of the items after a null or wrong
				// one: a placeholder that validation does not report
				// again (p is bad). Other items stay zero.
				out.Index(i).Set(placeholder(t.Elem()))
			}
		}
		if !dst.IsValid() {
			return out.Interface(), true
		}
		dst.Set(out)
		return nil, true
	case n.Kind != yaml.ScalarNode:
		d.fail(p, at, "expected %s, got %s", describeType(t), describeNode(n))
		return nil, false
	default:
		var msg string
		if v, msg = scalar(n.Value, tag, t); msg != "" {
			d.fail(p, at, "%s", msg)
			return nil, false
		}
	}
	if !dst.IsValid() {
		return v, true
	}
	dst.Set(reflect.ValueOf(v))
	return nil, true
}

// plainList is a list as viper alone would decode it: a []any of plain
// values, an empty mapping or a zero value for an item that was null or
// wrong.
func (d *decoder) plainList(n *yaml.Node, t reflect.Type, p *docPath) []any {
	out := make([]any, len(n.Content))
	for i, item := range n.Content {
		v, ok := d.value(item, t.Elem(), p.item(i), reflect.Value{})
		if !ok || v == nil {
			et := t.Elem()
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				v = map[string]any{}
			} else {
				v = reflect.Zero(et).Interface()
			}
		}
		out[i] = v
	}
	return out
}

// knownTags are the YAML tags a document may use (most are implied).
var knownTags = map[string]bool{
	"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true,
	"!!timestamp": true, "!!binary": true, "!!map": true, "!!seq": true,
}

// placeholder stands in for a list item of type t that was null or wrong:
// the zero item, its pointers set to zero values (what viper decodes from
// the empty mapping or zero value of plainList).
func placeholder(t reflect.Type) reflect.Value {
	v := reflect.New(t).Elem()
	if t.Kind() == reflect.Pointer {
		ptr := reflect.New(t.Elem())
		ptr.Elem().Set(placeholder(t.Elem()))
		v.Set(ptr)
	}
	return v
}

// mapping checks the keys of a mapping node against the schema of struct
// type t, and stores them in dst if it is valid (a settable value of type
// t), else returns them as a plain map.
func (d *decoder) mapping(n *yaml.Node, t reflect.Type, p *docPath, dst reflect.Value) any {
	s := schemaOf(t)
	var out map[string]any
	if !dst.IsValid() {
		out = make(map[string]any, len(n.Content)/2)
	}
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	// Mappings named by "<<" keys fill in what the mapping does not set
	// itself, the first to set a key winning; they may merge others.
	visited := map[*yaml.Node]bool{n: true}
	queue := []*yaml.Node{n}
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := deref(m.Content[i]), m.Content[i+1]
			switch {
			case k.Kind != yaml.ScalarNode:
				d.probs.addAt(p.String(), k.Line, k.Column, "a key must be a plain name, got %s", describeNode(k))
			case k.ShortTag() == "!!merge":
				for _, src := range d.mergeSources(v, p) {
					if !visited[src] {
						visited[src] = true
						queue = append(queue, src)
					}
				}
			case m != n && seen[k.Value] != nil:
				// Set by the mapping itself or an earlier source.
			default:
				d.key(k, v, s, p, seen, out, dst)
			}
		}
	}
	if dst.IsValid() {
		return nil
	}
	return out
}

// key checks one key k with value v of a mapping at p, and stores its
// value in dst (a struct of schema s) if dst is valid, else in out.
func (d *decoder) key(k, v *yaml.Node, s *structSchema, p *docPath, seen map[string]*yaml.Node, out map[string]any, dst reflect.Value) {
	name := k.Value
	if first := seen[name]; first != nil {
		if d.probs.spare() {
			return
		}
		d.probs.addAt(p.String(), k.Line, k.Column, "key %q is given twice in one mapping (first at line %d, column %d)", clip(name), first.Line, first.Column)
		return
	}
	seen[name] = k
	f, ok := s.fields[name]
	if !ok {
		if d.probs.spare() {
			return // not listed: spare the hint and the path
		}
		d.probs.addAt(p.String(), k.Line, k.Column, "unknown key %q%s", clip(name), hint(name, s.keys))
		return
	}
	if dst.IsValid() {
		d.value(v, f.typ, p.child(name), dst.FieldByIndex(f.index))
		return
	}
	if val, ok := d.value(v, f.typ, p.child(name), reflect.Value{}); ok && val != nil {
		out[name] = val
	}
}

// mergeSources returns the mappings a "<<" key names: one mapping or a list
// of them.
func (d *decoder) mergeSources(v *yaml.Node, p *docPath) []*yaml.Node {
	n := deref(v)
	switch n.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{n}
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, item := range n.Content {
			if m := deref(item); m.Kind == yaml.MappingNode {
				out = append(out, m)
			} else {
				d.probs.addAt(p.String(), item.Line, item.Column, "<< merges mappings, got %s", describeNode(m))
			}
		}
		return out
	}
	d.probs.addAt(p.String(), v.Line, v.Column, "<< merges mappings, got %s", describeNode(n))
	return nil
}

// hint suggests the key the author may have meant: the same key in another
// case, or one a typo away.
func hint(name string, keys []string) string {
	for _, k := range keys {
		if strings.EqualFold(k, name) {
			return fmt.Sprintf(" (keys are lower case: %q)", k)
		}
	}
	if len(name) > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, k := range keys {
		if dist := editDistance(strings.ToLower(name), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b (b at most 64 bytes
// long; schema keys are short).
func editDistance(a, b string) int {
	if len(b) > 64 {
		return len(a) + len(b)
	}
	var rows [2][65]int
	prev, cur := rows[0][:len(b)+1], rows[1][:len(b)+1]
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// duration accepts a string with a unit ("10s") or the number 0.
func (d *decoder) duration(n, at *yaml.Node, p *docPath) (any, bool) {
	if n.Kind == yaml.ScalarNode {
		v, msg := scalar(n.Value, n.ShortTag(), durationType)
		if msg == "" {
			return v, true
		}
		d.fail(p, at, "%s", msg)
		return nil, false
	}
	d.fail(p, at, "expected %s, got %s", describeType(durationType), describeNode(n))
	return nil, false
}

// scalar converts the text of a scalar with YAML tag tag to a value of type
// t, or says what is wrong. Whole numbers are accepted where a string
// belongs (status_codes: 200) and are kept as written; nothing else is
// converted.
func scalar(text, tag string, t reflect.Type) (any, string) {
	got := func() string {
		if tag == "!!str" {
			return strconv.Quote(clip(text))
		}
		return clip(text)
	}
	if t == durationType {
		switch tag {
		case "!!str":
			dur, err := time.ParseDuration(text)
			if err != nil {
				return nil, fmt.Sprintf("expected %s, got %s", describeType(t), got())
			}
			return dur, ""
		case "!!int", "!!float":
			if f, err := strconv.ParseFloat(strings.ReplaceAll(text, "_", ""), 64); err == nil && f == 0 {
				return time.Duration(0), ""
			}
		}
		return nil, fmt.Sprintf("expected %s, got %s", describeType(t), got())
	}
	out := reflect.New(t).Elem()
	switch t.Kind() {
	case reflect.String:
		switch tag {
		case "!!str", "!!int", "!!timestamp":
			out.SetString(text)
			return out.Interface(), ""
		case "!!float":
			return nil, fmt.Sprintf("expected a string, got the number %s (quote it: %q)", clip(text), clip(text))
		}
	case reflect.Bool:
		if tag == "!!bool" {
			out.SetBool(strings.EqualFold(text, "true"))
			return out.Interface(), ""
		}
		return nil, fmt.Sprintf("expected true or false, got %s", got())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if msg := setNumber(out, text, tag); msg != "" {
			return nil, msg
		}
		return out.Interface(), ""
	case reflect.Float32, reflect.Float64:
		if tag == "!!int" || tag == "!!float" {
			f, err := strconv.ParseFloat(strings.ReplaceAll(text, "_", ""), 64)
			if n, ierr := strconv.ParseInt(strings.ReplaceAll(text, "_", ""), 0, 64); tag == "!!int" && ierr == nil {
				f, err = float64(n), nil // 0x10 and 0o17 too
			}
			if err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && !out.OverflowFloat(f) {
				out.SetFloat(f)
				return out.Interface(), ""
			}
			return nil, fmt.Sprintf("expected a finite number, got %s", got())
		}
	}
	return nil, fmt.Sprintf("expected %s, got %s", describeType(t), got())
}

// setNumber stores the whole number text (YAML tag tag) in out, or says
// why it cannot.
func setNumber(out reflect.Value, text, tag string) string {
	plain := strings.ReplaceAll(text, "_", "")
	signed := out.Kind() >= reflect.Int && out.Kind() <= reflect.Int64
	outOfRange := fmt.Sprintf("number %s is out of range", clip(text))
	switch tag {
	case "!!int":
		if n, err := strconv.ParseInt(plain, 0, 64); err == nil {
			if signed {
				if out.OverflowInt(n) {
					return outOfRange
				}
				out.SetInt(n)
				return ""
			}
			if n < 0 || out.OverflowUint(uint64(n)) {
				return outOfRange
			}
			out.SetUint(uint64(n))
			return ""
		}
		if n, err := strconv.ParseUint(plain, 0, 64); err == nil && !signed && !out.OverflowUint(n) {
			out.SetUint(n)
			return ""
		}
		return outOfRange
	case "!!float":
		f, err := strconv.ParseFloat(plain, 64)
		if err != nil || f != math.Trunc(f) || math.IsInf(f, 0) {
			return fmt.Sprintf("expected a whole number, got %s", clip(text))
		}
		if f < math.MinInt64 || f >= math.MaxInt64 {
			return outOfRange
		}
		return setNumber(out, strconv.FormatInt(int64(f), 10), "!!int")
	case "!!str":
		return fmt.Sprintf("expected a number, got %q", clip(text))
	}
	return fmt.Sprintf("expected a number, got %s", clip(text))
}

// describeType names what a key of type t expects.
func describeType(t reflect.Type) string {
	if t == durationType {
		return `a duration such as "10s"`
	}
	switch t.Kind() {
	case reflect.Pointer:
		return describeType(t.Elem())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// describeNode names what the document gave.
func describeNode(n *yaml.Node) string {
	n = deref(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!str" {
			return strconv.Quote(clip(n.Value))
		}
		return clip(n.Value)
	}
	return "nothing"
}

// clipLen bounds the text of a document value quoted in a message.
const clipLen = 64

// clip shortens s for a message.
func clip(s string) string {
	if len(s) <= clipLen {
		return s
	}
	cut := clipLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
