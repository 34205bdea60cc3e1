package node

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
)

// A reload — a new reading of the document (SIGHUP, a file change, an
// etcd watch event) or a change of the node's run-time overrides — runs
// one path, in the goroutine that owns the node's control-plane state:
//
//  1. the source parsed and validated the document (config.Parse); an
//     invalid one ends here ("invalid");
//  2. the node must still be in it with the same role ("refused"
//     otherwise: a node's identity is not reloadable); the revision in
//     force again is "unchanged", unless the update is forced (SIGHUP, a
//     change of a file the document names);
//  3. the overrides are laid over it and the role compiles it into each
//     component's configuration, then prepares the components (new
//     sockets bound, new tables compiled) — an error undoes what was
//     prepared ("failed");
//  4. the components commit: each swaps its immutable snapshot; flows of
//     removed listeners and endpoints are cut ("applied").
//
// At every step but the last, an error leaves the document in force
// untouched. Settings read only at start (fixed.go) that changed are
// reported as needing a restart, never silently dropped.

// Reload results, the values of ReloadStatus.Result and of the result
// label of anyedge_config_reloads_total.
const (
	ReloadApplied   = "applied"   // the new document is in force
	ReloadUnchanged = "unchanged" // the same revision again: nothing to do
	ReloadInvalid   = "invalid"   // the document could not be read or is invalid
	ReloadRefused   = "refused"   // it changes the node's identity (name, role)
	ReloadFailed    = "failed"    // compiling or preparing it failed
)

var reloadResults = []string{ReloadApplied, ReloadUnchanged, ReloadInvalid, ReloadRefused, ReloadFailed}

// ConfigStatus is the document a node runs, and what its reloads did, in
// /status.
type ConfigStatus struct {
	// Revision identifies the document in force (config.RevisionOf its
	// bytes); LoadedAt is when it was put in force.
	Revision string    `json:"revision"`
	LoadedAt time.Time `json:"loaded_at"`
	// Source is where the document comes from; SourceState, for a
	// source with a link (etcd), whether it reaches it.
	Source      string               `json:"source,omitempty"`
	SourceState *config.SourceStatus `json:"source_state,omitempty"`
	// Reloads counts reloads by result (every result is present).
	Reloads map[string]uint64 `json:"reloads"`
	// LastReload is the latest reload, LastError the latest one that
	// did not apply (invalid, refused or failed).
	LastReload *ReloadStatus `json:"last_reload,omitempty"`
	LastError  *ReloadStatus `json:"last_error,omitempty"`
	// RestartRequired lists the settings (document paths) whose new
	// values wait for a restart: the node runs their old values.
	RestartRequired []string `json:"restart_required,omitempty"`
	// Overrides are the node's run-time overrides in force (anyedge ctl
	// weight, ctl dial), laid over the document: the node runs these
	// values, not the document's, until ctl reset or a restart.
	Overrides []OverrideStatus `json:"overrides,omitempty"`
}

// ReloadStatus is one reload.
type ReloadStatus struct {
	At      time.Time `json:"at"`
	Trigger string    `json:"trigger,omitempty"`
	Result  string    `json:"result"`
	// Revision is the revision of the document read (none when it could
	// not be read).
	Revision string `json:"revision,omitempty"`
	// Error says why it did not apply, one problem per line.
	Error string `json:"error,omitempty"`
}

// reloader keeps a node's document and the record of its reloads. Its
// fields are owned by the node's control goroutine; /status and the
// metrics read the published ConfigStatus and the counters.
type reloader struct {
	name   string
	role   config.Role
	source string
	// sourceStatus is Options.SourceStatus (nil: a file).
	sourceStatus func() *config.SourceStatus
	log          *slog.Logger
	// doc is the document in force (overrides not applied), rev its
	// revision.
	doc      *config.Document
	rev      config.Revision
	loadedAt time.Time
	// started are the fixed settings the node started with.
	started map[string]any
	restart []string
	last    *ReloadStatus
	lastErr *ReloadStatus
	counts  [5]atomic.Uint64 // by index in reloadResults
	// ov are the run-time overrides; cmds brings their changes to the
	// control goroutine (overrides.go).
	ov   overrides
	cmds chan overrideCmd

	published atomic.Pointer[ConfigStatus]
}

func newReloader(opts Options, n config.Node, log *slog.Logger) *reloader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &reloader{name: n.Name, role: n.Role, source: opts.Source, sourceStatus: opts.SourceStatus, log: log.With("component", "config"),
		doc: opts.Doc, rev: opts.Revision, loadedAt: time.Now(), started: fixedSettings(opts.Doc, n),
		cmds: make(chan overrideCmd)}
	r.publish()
	return r
}

// effective is doc as the node runs it: with its run-time overrides laid
// over it.
func (r *reloader) effective(doc *config.Document) *config.Document { return r.ov.apply(doc) }

// node returns the node's part of doc, or why doc cannot be reloaded by
// this node: its name is gone or names a node of another role.
func (r *reloader) node(doc *config.Document) (config.Node, error) {
	n, err := doc.Node(r.name)
	if err != nil {
		return n, fmt.Errorf("the document has no node %q (a node's name cannot change by reload): %w", r.name, err)
	}
	if n.Role != r.role {
		return n, fmt.Errorf("node %q is a %s in the new document and runs as a %s: a node's role cannot change by reload; restart it",
			r.name, n.Role, r.role)
	}
	return n, nil
}

// reload applies u with apply, the role's compile, prepare and commit,
// and records and logs the outcome. apply returns what it changed, for
// the log.
func (r *reloader) reload(u config.Update, apply func(*config.Document, config.Node) (string, error)) {
	res := &ReloadStatus{At: time.Now(), Trigger: u.Trigger}
	var changed string
	switch {
	case u.Err != nil:
		res.Result, res.Error = ReloadInvalid, errorText(u.Err)
	default:
		res.Revision = string(u.Loaded.Revision)
		n, err := r.node(u.Loaded.Doc)
		switch {
		case err != nil:
			res.Result, res.Error = ReloadRefused, err.Error()
		case u.Loaded.Revision == r.rev && r.rev != "" && !u.Force:
			res.Result = ReloadUnchanged
		default:
			if changed, err = apply(u.Loaded.Doc, n); err != nil {
				res.Result, res.Error = ReloadFailed, errorText(err)
				break
			}
			res.Result = ReloadApplied
			r.doc, r.rev, r.loadedAt = u.Loaded.Doc, u.Loaded.Revision, res.At
			var dropped []OverrideStatus
			if r.ov, dropped = r.ov.prune(r.doc); len(dropped) > 0 {
				for _, o := range dropped {
					r.log.Warn("override dropped: the new document has no such "+map[string]string{"weight": "endpoint", "dial": "region"}[o.Kind],
						"kind", o.Kind, "name", o.Name, "value", o.Value, "revision", res.Revision)
				}
			}
			r.restart = fixedChanges(r.started, fixedSettings(u.Loaded.Doc, n))
		}
	}
	r.record(res, changed)
}

// record counts, logs and publishes a reload.
func (r *reloader) record(res *ReloadStatus, changed string) {
	r.counts[slices.Index(reloadResults, res.Result)].Add(1)
	r.last = res
	switch res.Result {
	case ReloadApplied:
		args := []any{"revision", res.Revision, "trigger", res.Trigger, "changed", changed}
		if len(r.restart) > 0 {
			args = append(args, "restart_required", strings.Join(r.restart, ", "))
			r.log.Warn("config reloaded; some settings need a restart to take effect", args...)
		} else {
			r.log.Info("config reloaded", args...)
		}
	case ReloadUnchanged:
		r.log.Debug("config unchanged", "revision", res.Revision, "trigger", res.Trigger)
	default:
		r.lastErr = res
		r.log.Error("config reload "+res.Result+"; the running document stays in force", "revision", r.rev,
			"trigger", res.Trigger, "err", res.Error)
	}
	r.publish()
}

// publish makes the current state what /status shows.
func (r *reloader) publish() {
	st := &ConfigStatus{Revision: string(r.rev), LoadedAt: r.loadedAt, Source: r.source,
		Reloads: map[string]uint64{}, LastReload: r.last, LastError: r.lastErr, RestartRequired: r.restart,
		Overrides: r.ov.list()}
	for i, name := range reloadResults {
		st.Reloads[name] = r.counts[i].Load()
	}
	r.published.Store(st)
}

// status returns what /status shows.
func (r *reloader) status() ConfigStatus {
	st := *r.published.Load()
	if r.sourceStatus != nil {
		st.SourceState = r.sourceStatus()
	}
	return st
}

// maxErrorLines bounds the problems a reload error shows in /status.
const maxErrorLines = 20

// errorText is err for /status: a validation error's problems one per
// line, at most maxErrorLines.
func errorText(err error) string {
	s := err.Error()
	var ve *config.ValidationError
	if errors.As(err, &ve) && len(ve.Problems) > maxErrorLines {
		lines := strings.SplitN(s, "\n", maxErrorLines+1)
		s = strings.Join(lines[:maxErrorLines], "\n") + fmt.Sprintf("\n… and %d more", ve.Total()-maxErrorLines)
	}
	return s
}

var (
	configInfoDesc = prometheus.NewDesc("anyedge_config_info",
		"Always 1; the revision label is the document in force.", []string{"revision"}, nil)
	configLoadedDesc = prometheus.NewDesc("anyedge_config_loaded_timestamp_seconds",
		"When the document in force was loaded, in Unix seconds.", nil, nil)
	configReloadsDesc = prometheus.NewDesc("anyedge_config_reloads_total",
		"Reloads of the document, by result (applied, unchanged, invalid, refused, failed).", []string{"result"}, nil)
	configRestartDesc = prometheus.NewDesc("anyedge_config_restart_required",
		"Settings of the document in force that wait for a restart (listed in /status).", nil, nil)
	configSourceUpDesc = prometheus.NewDesc("anyedge_config_source_connected",
		"1 while the config source reaches where the document lives (etcd); 0 while it does not and the document in force stays.", nil, nil)
	configSourceErrorsDesc = prometheus.NewDesc("anyedge_config_source_errors_total",
		"Failed reads, watches and probes of the config source (etcd).", nil, nil)
	configSourceDisconnectsDesc = prometheus.NewDesc("anyedge_config_source_disconnects_total",
		"Times the config source lost where the document lives (etcd).", nil, nil)
	configOverridesDesc = prometheus.NewDesc("anyedge_config_overrides",
		"Run-time overrides in force (anyedge ctl weight, ctl dial), by kind (weight, dial).", []string{"kind"}, nil)
)

// configCollector exports the document in force and the reloads.
type configCollector struct{ r *reloader }

// Describe implements prometheus.Collector.
func (c configCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{configInfoDesc, configLoadedDesc, configReloadsDesc, configRestartDesc, configOverridesDesc,
		configSourceUpDesc, configSourceErrorsDesc, configSourceDisconnectsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c configCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.r.status()
	ch <- gauge(configInfoDesc, 1, st.Revision)
	ch <- gauge(configLoadedDesc, float64(st.LoadedAt.UnixMilli())/1000)
	for i, name := range reloadResults {
		ch <- counter(configReloadsDesc, c.r.counts[i].Load(), name)
	}
	ch <- gauge(configRestartDesc, float64(len(st.RestartRequired)))
	if s := st.SourceState; s != nil {
		up := 0.0
		if s.Connected {
			up = 1
		}
		ch <- gauge(configSourceUpDesc, up)
		ch <- counter(configSourceErrorsDesc, s.Errors)
		ch <- counter(configSourceDisconnectsDesc, s.Disconnects)
	}
	kinds := map[string]int{admin.OverrideWeight: 0, admin.OverrideDial: 0}
	for _, o := range st.Overrides {
		kinds[o.Kind]++
	}
	for kind, n := range kinds {
		ch <- gauge(configOverridesDesc, float64(n), kind)
	}
}
