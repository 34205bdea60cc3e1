package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// EnvPrefix starts the name of every environment variable that overrides a
// document key: topology.pki_dir is overridden by ANYEDGE_TOPOLOGY_PKI_DIR.
const EnvPrefix = "ANYEDGE_"

// LoadOptions tunes Load and LoadFile.
type LoadOptions struct {
	// Env is the environment consulted for ANYEDGE_* overrides, as
	// "KEY=value" strings. Nil means os.Environ(); an empty non-nil slice
	// turns overrides off.
	Env []string
}

// LoadFile reads the YAML document at path and returns it decoded, with
// defaults applied and validated. See Load for the errors it returns.
func LoadFile(path string, opts LoadOptions) (*Document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	return Load(data, opts)
}

// Load decodes a YAML document strictly, overrides scalar keys from the
// environment, applies defaults and validates the result.
//
// Only keys outside lists can be overridden from the environment (today that
// is topology.pki_dir); items of accelerators, pops and regions cannot. The
// variable name is EnvPrefix followed by the key path in upper case with dots
// replaced by underscores.
//
// Malformed YAML yields an error of the form "config: yaml: line N: ...".
// Unknown keys, values of the wrong type and every validation problem yield a
// *ValidationError that lists all of them with their document paths.
func Load(data []byte, opts LoadOptions) (*Document, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		var pe viper.ConfigParseError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			err = pe.Unwrap()
		}
		return nil, fmt.Errorf("config: %w", err)
	}

	var probs problems
	applyEnv(v, opts.Env, &probs)
	if len(probs) > 0 {
		return nil, probs.err()
	}

	var doc Document
	err := v.UnmarshalExact(&doc, func(c *mapstructure.DecoderConfig) {
		c.WeaklyTypedInput = false
		c.DecodeHook = mapstructure.DecodeHookFuncValue(strictHook)
	})
	if err != nil {
		decodeProblems(err, &probs)
		return nil, probs.err()
	}

	doc = doc.WithDefaults()
	if err := doc.Validate(); err != nil {
		return nil, err
	}
	return &doc, nil
}

// envKey is one document key that may be overridden from the environment.
type envKey struct {
	path string
	typ  reflect.Type
}

// envKeys lists the keys of t (a struct) that do not sit inside a list.
func envKeys(prefix string, t reflect.Type) []envKey {
	var keys []envKey
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
		switch ft := f.Type; ft.Kind() {
		case reflect.Struct:
			keys = append(keys, envKeys(path, ft)...)
		case reflect.Slice, reflect.Map, reflect.Pointer:
			// Lists are not overridable; the schema has no maps or
			// pointers outside lists.
		default:
			keys = append(keys, envKey{path: path, typ: ft})
		}
	}
	return keys
}

// envName is the variable that overrides key path.
func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// applyEnv sets every overridable key that has a variable in env.
func applyEnv(v *viper.Viper, env []string, probs *problems) {
	if env == nil {
		env = os.Environ()
	}
	vars := make(map[string]string)
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			vars[k] = val
		}
	}
	if len(vars) == 0 {
		return
	}
	for _, k := range envKeys("", reflect.TypeFor[Document]()) {
		name := envName(k.path)
		raw, ok := vars[name]
		if !ok || raw == "" {
			continue
		}
		val, err := envValue(raw, k.typ)
		if err != nil {
			probs.add(k.path, "from %s: %v", name, err)
			continue
		}
		// A scalar where a mapping belongs would make viper's nested Set
		// meaningless; let the decoder report it instead.
		if parent, _, ok := cutLast(k.path, "."); ok && v.IsSet(parent) {
			if _, isMap := v.Get(parent).(map[string]any); !isMap {
				continue
			}
		}
		v.Set(k.path, val)
	}
}

// cutLast splits s around the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// envValue converts an environment string to what the decoder expects for t.
func envValue(raw string, t reflect.Type) (any, error) {
	if t == reflect.TypeFor[time.Duration]() {
		return raw, nil // decoded by strictHook
	}
	switch t.Kind() {
	case reflect.String:
		return raw, nil
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return nil, fmt.Errorf("expected true or false, got %q", raw)
		}
		return b, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("expected a number, got %q", raw)
		}
		return int(n), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("expected a number, got %q", raw)
		}
		return n, nil
	default:
		return nil, fmt.Errorf("cannot be set from the environment")
	}
}

// typeError is a value of the wrong type in the document.
type typeError struct {
	want reflect.Type
	got  any
	msg  string // replaces the generic message when set
}

func (e *typeError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("expected %s, got %s", describeType(e.want), describeValue(e.got))
}

var durationType = reflect.TypeFor[time.Duration]()

// strictHook checks every value against the schema before mapstructure sees
// it, so that type errors are uniform and nothing is converted silently:
// durations are strings such as "10s", numbers must be whole and fit, lists
// stay lists. Integers are accepted where a string belongs (port-like values
// such as status_codes: 200).
func strictHook(from, to reflect.Value) (any, error) {
	data := from.Interface()
	tt := to.Type()
	fk := from.Kind()
	if tt == durationType {
		switch fk {
		case reflect.String:
			d, err := time.ParseDuration(from.String())
			if err != nil {
				return nil, &typeError{want: tt, got: data}
			}
			return d, nil
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64:
			if from.Equal(reflect.Zero(from.Type())) {
				return time.Duration(0), nil
			}
			return nil, &typeError{want: tt, got: data}
		default:
			if from.Type() == tt {
				return data, nil
			}
			return nil, &typeError{want: tt, got: data}
		}
	}
	switch tk := tt.Kind(); tk {
	case reflect.Pointer, reflect.Interface:
		return data, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return checkNumber(from, tt)
	case reflect.String:
		switch fk {
		case reflect.String:
			return data, nil
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return strconv.FormatInt(from.Int(), 10), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return strconv.FormatUint(from.Uint(), 10), nil
		}
	case reflect.Bool:
		if fk == reflect.Bool {
			return data, nil
		}
	case reflect.Slice:
		if fk == reflect.Slice || fk == reflect.Array {
			return data, nil
		}
	case reflect.Struct, reflect.Map:
		if fk == reflect.Map || (fk == reflect.Struct && from.Type() == tt) {
			return data, nil
		}
	default:
		return data, nil
	}
	return nil, &typeError{want: tt, got: data}
}

// checkNumber accepts whole numbers that fit in t.
func checkNumber(from reflect.Value, t reflect.Type) (any, error) {
	data := from.Interface()
	out := reflect.New(t).Elem()
	signed := t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64
	outOfRange := &typeError{msg: fmt.Sprintf("number %v is out of range", data)}
	switch from.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := from.Int()
		if signed {
			if out.OverflowInt(n) {
				return nil, outOfRange
			}
		} else if n < 0 || out.OverflowUint(uint64(n)) {
			return nil, outOfRange
		}
		return data, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n := from.Uint()
		if signed {
			if n > math.MaxInt64 || out.OverflowInt(int64(n)) {
				return nil, outOfRange
			}
		} else if out.OverflowUint(n) {
			return nil, outOfRange
		}
		return data, nil
	case reflect.Float32, reflect.Float64:
		f := from.Float()
		if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, &typeError{msg: fmt.Sprintf("expected a whole number, got %v", data)}
		}
		if f < math.MinInt64 || f >= math.MaxInt64 {
			return nil, outOfRange
		}
		return checkNumber(reflect.ValueOf(int64(f)), t)
	}
	return nil, &typeError{want: t, got: data}
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
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	}
	return t.String()
}

// describeValue shows a value the document gave.
func describeValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return strconv.Quote(x)
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return fmt.Sprint(v)
}

// decodeProblems turns mapstructure's joined errors into problems with
// document paths.
func decodeProblems(err error, probs *problems) {
	switch e := err.(type) {
	case nil:
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			decodeProblems(inner, probs)
		}
	case *mapstructure.DecodeError:
		decodeProblem(e.Name(), e.Unwrap(), probs)
	default:
		if inner := errors.Unwrap(err); inner != nil {
			decodeProblems(inner, probs)
			return
		}
		probs.add("", "%v", err)
	}
}

// decodeProblem records what went wrong at path.
func decodeProblem(path string, err error, probs *problems) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, inner := range j.Unwrap() {
			decodeProblems(inner, probs)
		}
		return
	}
	var te *typeError
	var ue *mapstructure.UnconvertibleTypeError
	var pe *mapstructure.ParseError
	switch {
	case errors.As(err, &te):
		probs.add(path, "%s", te.Error())
	case errors.As(err, &ue):
		probs.add(path, "expected %s, got %s", describeType(ue.Expected.Type()), describeValue(ue.Value))
	case errors.As(err, &pe):
		probs.add(path, "expected %s, got %s", describeType(pe.Expected.Type()), describeValue(pe.Value))
	default:
		msg := err.Error()
		if keys, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
			for _, k := range strings.Split(keys, ", ") {
				probs.add(path, "unknown key %q", k)
			}
			return
		}
		probs.add(path, "%s", msg)
	}
}
