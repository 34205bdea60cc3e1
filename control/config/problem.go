package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxProblems is how many problems a ValidationError lists; the rest are
// only counted (ValidationError.Omitted), so that a huge broken document
// costs bounded memory and output.
const MaxProblems = 1000

// maxMsgLen bounds one problem's message.
const maxMsgLen = 512

// Problem is one thing wrong with a document.
type Problem struct {
	// Path locates the offending value, e.g.
	// "accelerators[0].listeners[1].port_ranges[0]"; empty means the root.
	Path string
	// Line and Column (1-based) locate the value in the YAML text: the
	// value itself, the key of an unknown or repeated key, or, for a value
	// that the document leaves out, the nearest enclosing value. Zero when
	// the problem has no place in the text (a value from the environment,
	// or a Document built in Go).
	Line, Column int
	// Msg says what is wrong.
	Msg string
}

// String renders the problem as "line:column: path: msg", leaving out what
// is unknown.
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Column))
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError lists the problems found in a document, in document
// order: unknown and repeated keys, values of the wrong type and failed
// validation, all at once.
type ValidationError struct {
	// Problems are the first MaxProblems problems.
	Problems []Problem
	// Omitted counts the problems found beyond those.
	Omitted int
}

// Error returns one line per problem, and a last line counting the omitted
// ones.
func (e *ValidationError) Error() string {
	lines := make([]string, 0, len(e.Problems)+1)
	for _, p := range e.Problems {
		lines = append(lines, p.String())
	}
	if e.Omitted > 0 {
		lines = append(lines, fmt.Sprintf("… and %d more", e.Omitted))
	}
	return strings.Join(lines, "\n")
}

// Total is the number of problems found, listed or not.
func (e *ValidationError) Total() int { return len(e.Problems) + e.Omitted }

// problems collects Problems while walking a document, keeping at most
// MaxProblems of them.
type problems struct {
	list    []Problem
	omitted int
	// skip, when set, drops problems at or under these paths: values the
	// decoder already reported and left out.
	skip map[string]bool
}

func (ps *problems) add(path, format string, args ...any) { ps.addAt(path, 0, 0, format, args...) }

func (ps *problems) addAt(path string, line, col int, format string, args ...any) {
	if ps.skipped(path) {
		return
	}
	if len(ps.list) >= MaxProblems {
		ps.omitted++
		return
	}
	msg := fmt.Sprintf(format, args...)
	if len(msg) > maxMsgLen {
		msg = clip(msg[:maxMsgLen-clipLen]) + "…"
	}
	ps.list = append(ps.list, Problem{Path: path, Line: line, Column: col, Msg: msg})
}

// spare reports whether ps is full, and then counts one more problem as
// omitted: a caller skips building a message that would not be listed.
// Only for sets without skip, where every problem added counts.
func (ps *problems) spare() bool {
	if len(ps.list) < MaxProblems {
		return false
	}
	ps.omitted++
	return true
}

// skipped reports whether path or one of its parents is in ps.skip.
func (ps *problems) skipped(path string) bool {
	if len(ps.skip) == 0 {
		return false
	}
	if ps.skip[path] {
		return true
	}
	for i := range len(path) {
		if (path[i] == '.' || path[i] == '[') && ps.skip[path[:i]] {
			return true
		}
	}
	return false
}

// err returns nil or a *ValidationError with the problems of all of sets,
// in document order, at most MaxProblems of them.
func mergeProblems(sets ...*problems) error {
	var all []Problem
	omitted := 0
	for _, s := range sets {
		all = append(all, s.list...)
		omitted += s.omitted
	}
	if len(all) == 0 && omitted == 0 {
		return nil
	}
	slices.SortStableFunc(all, func(a, b Problem) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	if len(all) > MaxProblems {
		omitted += len(all) - MaxProblems
		all = all[:MaxProblems:MaxProblems]
	}
	return &ValidationError{Problems: all, Omitted: omitted}
}

// err returns nil or a *ValidationError with ps's problems.
func (ps *problems) err() error { return mergeProblems(ps) }

// locator finds the YAML node of a document path.
type locator struct {
	root *yaml.Node
	// index maps the keys of large mappings, built on first use, so that
	// finding many paths in a wide mapping stays linear.
	index map[*yaml.Node]map[string]*yaml.Node
}

// maxMergeDepth bounds the search through "<<" keys that merge mappings
// that merge others (an alias may even name the mapping it is in).
const maxMergeDepth = 8

// smallMapping is the size up to which a mapping is searched in order.
const smallMapping = 16

// locate sets the position of every problem without one to that of its
// path's node, or of the nearest enclosing node the document has.
func (l *locator) locate(ps *problems) {
	if l.root == nil {
		return
	}
	for i := range ps.list {
		p := &ps.list[i]
		if p.Line == 0 {
			n := l.find(p.Path)
			p.Line, p.Column = n.Line, n.Column
		}
	}
}

// find walks path ("a.b[2].c") down from the root as far as the document
// goes.
func (l *locator) find(path string) *yaml.Node {
	n := deref(l.root)
	for path != "" {
		var next *yaml.Node
		if path[0] == '[' {
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return n
			}
			i, err := strconv.Atoi(path[1:end])
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return n
			}
			next, path = n.Content[i], path[end+1:]
		} else {
			path = strings.TrimPrefix(path, ".")
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			next = l.lookup(n, path[:end], 0)
			if next == nil {
				return n
			}
			path = path[end:]
		}
		n = deref(next)
	}
	return n
}

// lookup returns the value of key in mapping n (merged keys included), or
// nil.
func (l *locator) lookup(n *yaml.Node, key string, depth int) *yaml.Node {
	if n.Kind != yaml.MappingNode || depth > maxMergeDepth {
		return nil
	}
	if len(n.Content) <= 2*smallMapping {
		var merged *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := deref(n.Content[i])
			if k.Value == key && k.Kind == yaml.ScalarNode {
				return n.Content[i+1]
			}
			if k.ShortTag() == "!!merge" && merged == nil {
				merged = l.lookupMerged(n.Content[i+1], key, depth+1)
			}
		}
		return merged
	}
	idx, ok := l.index[n]
	if !ok {
		idx = make(map[string]*yaml.Node, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := deref(n.Content[i])
			if _, dup := idx[k.Value]; !dup && k.Kind == yaml.ScalarNode && k.ShortTag() != "!!merge" {
				idx[k.Value] = n.Content[i+1]
			}
		}
		if l.index == nil {
			l.index = make(map[*yaml.Node]map[string]*yaml.Node)
		}
		l.index[n] = idx
	}
	return idx[key]
}

// lookupMerged finds key in the mappings a "<<" value names.
func (l *locator) lookupMerged(v *yaml.Node, key string, depth int) *yaml.Node {
	v = deref(v)
	if v.Kind == yaml.SequenceNode {
		for _, item := range v.Content {
			if m := deref(item); m.Kind == yaml.MappingNode {
				if found := l.lookup(m, key, depth); found != nil {
					return found
				}
			}
		}
		return nil
	}
	return l.lookup(v, key, depth)
}
