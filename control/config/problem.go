package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a document.
type Problem struct {
	// Path locates the offending value, e.g.
	// "accelerators[0].listeners[1].port_ranges[0]"; empty means the root.
	Path string
	// Msg says what is wrong.
	Msg string
}

// String renders the problem as "path: msg".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// ValidationError lists every problem found in a document, in document
// order. Load returns it for unknown keys, wrong types and failed validation.
type ValidationError struct {
	Problems []Problem
}

// Error returns one line per problem.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// problems collects Problems while walking a document.
type problems []Problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// err returns nil or a *ValidationError with the problems in document order.
func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	out := slices.Clone([]Problem(ps))
	slices.SortStableFunc(out, func(a, b Problem) int { return comparePaths(a.Path, b.Path) })
	return &ValidationError{Problems: out}
}

// pathToken is one step of a path: a key or a list index.
type pathToken struct {
	key   string
	index int
	isIdx bool
}

// splitPath turns "a[0].b" into tokens a, [0], b.
func splitPath(p string) []pathToken {
	var toks []pathToken
	for part := range strings.SplitSeq(p, ".") {
		if part == "" {
			continue
		}
		name, rest, _ := strings.Cut(part, "[")
		if name != "" {
			toks = append(toks, pathToken{key: name})
		}
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			n, err := strconv.Atoi(idx)
			if err != nil {
				toks = append(toks, pathToken{key: "[" + idx + "]"})
			} else {
				toks = append(toks, pathToken{index: n, isIdx: true})
			}
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return toks
}

// fieldRank orders the keys of struct type t by declaration; unknown keys
// come after all known ones.
func fieldRank(t reflect.Type, key string) (int, reflect.Type) {
	if t != nil && t.Kind() == reflect.Struct {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Tag.Get("mapstructure") == key {
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				return i, ft
			}
		}
	}
	return 1 << 20, nil
}

// comparePaths orders two paths as their values appear in the document:
// keys in schema order, list items by index, a parent before its children.
func comparePaths(a, b string) int {
	ta, tb := splitPath(a), splitPath(b)
	t := reflect.TypeFor[Document]()
	for i := 0; i < len(ta) && i < len(tb); i++ {
		x, y := ta[i], tb[i]
		switch {
		case x.isIdx && y.isIdx:
			if x.index != y.index {
				return x.index - y.index
			}
			if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
				t = t.Elem()
			} else {
				t = nil
			}
		case x.isIdx != y.isIdx:
			if x.isIdx {
				return -1
			}
			return 1
		default:
			rx, next := fieldRank(t, x.key)
			ry, _ := fieldRank(t, y.key)
			if rx != ry {
				return rx - ry
			}
			if c := strings.Compare(x.key, y.key); c != 0 {
				return c
			}
			t = next
		}
	}
	return len(ta) - len(tb)
}
