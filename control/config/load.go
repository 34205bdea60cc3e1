package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts the name of every environment variable that overrides a
// document key: topology.pki_dir is overridden by ANYEDGE_TOPOLOGY_PKI_DIR.
const EnvPrefix = "ANYEDGE_"

// LoadOptions tunes Parse, Load and LoadFile.
type LoadOptions struct {
	// Env is the environment consulted for ANYEDGE_* overrides, as
	// "KEY=value" strings. Nil means os.Environ(); an empty non-nil slice
	// turns overrides off.
	Env []string
}

// Revision identifies the exact bytes a document was read from: the first
// 16 hex digits of their SHA-256. Environment overrides are not part of it.
type Revision string

// RevisionOf returns the revision of data.
func RevisionOf(data []byte) Revision {
	sum := sha256.Sum256(data)
	return Revision(hex.EncodeToString(sum[:8]))
}

// Loaded is a document that Parse accepted, with the revision of its bytes.
type Loaded struct {
	// Doc is decoded, has its defaults applied and is valid.
	Doc *Document
	// Revision is RevisionOf the bytes.
	Revision Revision
}

// LoadFile is ParseFile without the revision.
func LoadFile(path string, opts LoadOptions) (*Document, error) {
	l, err := ParseFile(path, opts)
	return l.Doc, err
}

// ParseFile reads the file at path and parses it with Parse.
func ParseFile(path string, opts LoadOptions) (Loaded, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Loaded{}, fmt.Errorf("config: read %s: %w", path, err)
	}
	return Parse(data, opts)
}

// Load is Parse without the revision.
func Load(data []byte, opts LoadOptions) (*Document, error) {
	l, err := Parse(data, opts)
	return l.Doc, err
}

// Parse is the one way from bytes to a valid Document: files, `anyedge
// validate`, `anyedge dev` and reloads all come through here, so that they
// apply the same rules. It
//
//  1. checks the YAML text strictly against the schema: keys are exact
//     (case included) and given once per mapping, every value has the
//     schema's type;
//  2. decodes the checked values with a fresh viper and overrides scalar
//     keys from the environment;
//  3. applies the defaults (WithDefaults);
//  4. validates the result (Validate), which calls each component's own
//     rules.
//
// Text that is not one YAML document (malformed YAML, binary data, a second
// document) yields an error of the form "config: yaml: line N: ..." or
// "config: line N, column M: ...". Everything else yields a
// *ValidationError that lists every problem of steps 1, 2 and 4 at once
// with its document path, line and column, in document order. A value
// that step 1 refuses is left out, and step 4 says nothing more about it.
func Parse(data []byte, opts LoadOptions) (Loaded, error) {
	root, err := parseYAML(data)
	if err != nil {
		return Loaded{}, err
	}
	d := decoder{probs: new(problems), bad: make(map[string]bool), budget: 10*len(data) + 10000}
	doc, err := d.document(root, opts.Env)
	if err != nil {
		return Loaded{}, err
	}
	doc = doc.WithDefaults()
	validateProbs := problems{skip: d.bad}
	doc.validate(&validateProbs)
	// The node tree is kept until here (some twenty times the size of the
	// text, but no more than the values decoded from it): parsing the text
	// again to place validation problems cost more than a third of the
	// load of a large document of invalid values.
	loc := locator{root: root}
	loc.locate(&validateProbs)
	if err := mergeProblems(d.probs, &validateProbs); err != nil {
		return Loaded{}, err
	}
	return Loaded{Doc: &doc, Revision: RevisionOf(data)}, nil
}

// document is steps 1 and 2 of Parse: it checks root against the schema,
// decodes the checked values with a fresh viper and applies the overrides
// of env (see LoadOptions.Env). Problems go to d.probs; the error is only
// for viper refusing the values.
func (d *decoder) document(root *yaml.Node, env []string) (Document, error) {
	tree := d.decodeTree(root)
	v := viper.New()
	if err := v.MergeConfigMap(tree); err != nil {
		return Document{}, fmt.Errorf("config: %w", err)
	}
	applyEnv(v, env, d.probs)
	var doc Document
	err := v.UnmarshalExact(&doc, func(c *mapstructure.DecoderConfig) {
		// The tree holds values of exactly the schema's types already.
		c.DecodeHook = nil
		c.WeaklyTypedInput = false
	})
	if err != nil {
		// Step 1 admits only what the schema can hold: this is a bug.
		d.probs.add("", "internal error decoding checked values: %v", err)
		return Document{}, d.probs.err()
	}
	return doc, nil
}

// envKey is one document key that may be overridden from the environment.
type envKey struct {
	path string
	typ  reflect.Type
}

// envKeys lists the keys of t (a struct) that do not sit inside a list or
// behind a pointer.
func envKeys(prefix string, t reflect.Type) []envKey {
	var keys []envKey
	s := schemaOf(t)
	for _, k := range s.keys {
		ft := s.fields[k].typ
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		switch {
		case ft == durationType:
			keys = append(keys, envKey{path: path, typ: ft})
		case ft.Kind() == reflect.Struct:
			keys = append(keys, envKeys(path, ft)...)
		case ft.Kind() == reflect.Slice, ft.Kind() == reflect.Map, ft.Kind() == reflect.Pointer:
			// Not overridable.
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

// applyEnv sets every overridable key that has a non-empty variable in env.
// A value is read as it would be in the document (a string key takes the
// text as it is).
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
		var val any
		if k.typ.Kind() == reflect.String {
			val = raw
		} else {
			n := yaml.Node{Kind: yaml.ScalarNode, Value: raw}
			var msg string
			if val, msg = scalar(raw, n.ShortTag(), k.typ); msg != "" {
				probs.add(k.path, "from %s: %s", name, msg)
				continue
			}
		}
		v.Set(k.path, val)
	}
}

// Update is one new reading of the document by a source (a watched file,
// an etcd key), handed to a running node to reload.
type Update struct {
	// Loaded is the document read; set when Err is nil.
	Loaded Loaded
	// Err says why the document could not be read or is invalid; the
	// node then keeps the document it runs.
	Err error
	// Trigger says what made the source read: "sighup", "file changed",
	// "etcd watch" and so on; it is logged and shown in /status.
	Trigger string
	// Force asks the node to apply the document even if its revision is
	// the one in force: a file it names (an allow_file) changed, or the
	// operator sent SIGHUP.
	Force bool
}

// SourceStatus is a source's link to where the document lives (an etcd
// cluster), for /status and metrics. A file source has none.
type SourceStatus struct {
	// Connected is set while the source reaches the store and watches
	// the document; Since is when it last changed.
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	// Errors counts failed reads, watches and probes; Disconnects the
	// times the link was lost.
	Errors      uint64 `json:"errors"`
	Disconnects uint64 `json:"disconnects"`
	// LastError is the latest failure, at LastErrorAt.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// ModRevision is the store's revision of the document last read
	// (etcd's mod_revision of the key): what `anyedge config push
	// --expect-revision` compares.
	ModRevision int64 `json:"mod_revision,omitempty"`
}
