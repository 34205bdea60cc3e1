package node

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
)

// A node's run-time overrides (`anyedge ctl weight`, `ctl dial`) are an
// operator's temporary changes for an incident: an endpoint's weight, a
// region's traffic dial. They are laid over the document in force
// (reloader.effective) and applied by the same compile, prepare and
// commit as a reload; they outlive reloads of the document, except an
// override whose endpoint or region a reload removed (dropped, and
// logged), and end with `ctl reset` or a restart.

// OverrideStatus is one run-time override in force, in /status.
type OverrideStatus struct {
	// Kind is "weight" (Name an endpoint ID) or "dial" (Name a region).
	Kind  string    `json:"kind"`
	Name  string    `json:"name"`
	Value int       `json:"value"`
	Since time.Time `json:"since"`
}

// OverridesAnswer is the answer to POST /overrides: the overrides in
// force after the change.
type OverridesAnswer struct {
	Overrides []OverrideStatus `json:"overrides"`
}

// overrides are a node's run-time overrides: endpoint weights and region
// traffic dials by name. A value is never changed in place: a change
// makes a new one (the control goroutine owns the current one).
type overrides struct {
	weights map[string]OverrideStatus // by endpoint ID
	dials   map[string]OverrideStatus // by region
}

func (o overrides) empty() bool { return len(o.weights)+len(o.dials) == 0 }

// list returns the overrides for /status, dials first, each kind by name.
func (o overrides) list() []OverrideStatus {
	out := slices.Concat(slices.Collect(maps.Values(o.dials)), slices.Collect(maps.Values(o.weights)))
	slices.SortFunc(out, func(a, b OverrideStatus) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// change returns o changed by req, checked against doc (the document in
// force): the endpoint or region must be in it and the value in range.
func (o overrides) change(req admin.OverrideRequest, doc *config.Document, now time.Time) (overrides, error) {
	bad := func(code int, format string, args ...any) (overrides, error) {
		return o, &admin.StatusError{Status: code, Err: fmt.Errorf(format, args...)}
	}
	switch req.Kind {
	case admin.OverrideReset:
		return overrides{}, nil
	case admin.OverrideWeight, admin.OverrideDial:
	default:
		return bad(http.StatusBadRequest, "unknown override %q (weight, dial, reset)", req.Kind)
	}
	if req.Value == nil {
		return bad(http.StatusBadRequest, "%s %s: a value is required", req.Kind, req.Name)
	}
	next := overrides{weights: maps.Clone(o.weights), dials: maps.Clone(o.dials)}
	rule := map[string]struct {
		what  string
		names []string
		max   int
		set   *map[string]OverrideStatus
	}{
		admin.OverrideWeight: {"endpoint", endpointIDs(doc), 255, &next.weights},
		admin.OverrideDial:   {"region", regionNames(doc), 100, &next.dials},
	}[req.Kind]
	if !slices.Contains(rule.names, req.Name) {
		hint := ""
		if rule.what == "region" {
			hint = " (regions: " + strings.Join(rule.names, ", ") + ")"
		}
		return bad(http.StatusNotFound, "%s: no %s %q in the document in force%s", req.Kind, rule.what, req.Name, hint)
	}
	if v := *req.Value; v < 0 || v > rule.max {
		return bad(http.StatusBadRequest, "%s %s: %d is outside 0–%d", req.Kind, req.Name, v, rule.max)
	}
	if *rule.set == nil {
		*rule.set = map[string]OverrideStatus{}
	}
	(*rule.set)[req.Name] = OverrideStatus{Kind: req.Kind, Name: req.Name, Value: *req.Value, Since: now}
	return next, nil
}

// prune returns o without the overrides whose endpoint or region doc does
// not have, and those it dropped.
func (o overrides) prune(doc *config.Document) (overrides, []OverrideStatus) {
	eps, regions := endpointIDs(doc), regionNames(doc)
	var dropped []OverrideStatus
	keep := func(m map[string]OverrideStatus, names []string) map[string]OverrideStatus {
		out := map[string]OverrideStatus{}
		for k, v := range m {
			if slices.Contains(names, k) {
				out[k] = v
			} else {
				dropped = append(dropped, v)
			}
		}
		return out
	}
	return overrides{weights: keep(o.weights, eps), dials: keep(o.dials, regions)}, dropped
}

// apply returns doc with the overrides laid over it: a copy
// (config.Document.Clone) whose endpoint groups and endpoints carry the
// overridden dials and weights; doc itself is not touched. Overrides of
// names doc lacks change nothing.
func (o overrides) apply(doc *config.Document) *config.Document {
	if o.empty() {
		return doc
	}
	d := doc.Clone()
	for _, a := range d.Accelerators {
		for _, l := range a.Listeners {
			for gi := range l.EndpointGroups {
				g := &l.EndpointGroups[gi]
				if ov, ok := o.dials[g.Region]; ok {
					g.TrafficDial = &ov.Value
				}
				for ei := range g.Endpoints {
					if ov, ok := o.weights[g.Endpoints[ei].ID]; ok {
						g.Endpoints[ei].Weight = &ov.Value
					}
				}
			}
		}
	}
	return &d
}

// endpointIDs lists the IDs of the document's endpoints.
func endpointIDs(doc *config.Document) []string {
	var out []string
	for _, a := range doc.Accelerators {
		for _, l := range a.Listeners {
			for _, g := range l.EndpointGroups {
				for _, e := range g.Endpoints {
					out = append(out, e.ID)
				}
			}
		}
	}
	return out
}

// regionNames lists the topology's regions.
func regionNames(doc *config.Document) []string {
	var out []string
	for _, r := range doc.Topology.Regions {
		out = append(out, r.Name)
	}
	return out
}

// overrideCmd is one change of the overrides, for the control goroutine.
type overrideCmd struct {
	req  admin.OverrideRequest
	done chan overrideResult
}

type overrideResult struct {
	list []OverrideStatus
	err  error
}

// errBusy answers a change the control goroutine did not take in time.
var errBusy = &admin.StatusError{Status: http.StatusServiceUnavailable,
	Err: errors.New("the node's control goroutine is busy or stopped")}

// Override hands req to the node's control goroutine and waits for its
// answer (admin.Overrider, for both roles).
func (r *reloader) Override(req admin.OverrideRequest) (any, error) {
	cmd := overrideCmd{req: req, done: make(chan overrideResult, 1)}
	select {
	case r.cmds <- cmd:
	case <-time.After(5 * time.Second):
		return nil, errBusy
	}
	res := <-cmd.done
	if res.err != nil {
		return nil, res.err
	}
	return OverridesAnswer{Overrides: res.list}, nil
}

// override runs in the control goroutine: it changes the overrides and
// applies the document in force with them, through the reload's apply.
// A change that leaves the overrides as they are applies nothing.
func (r *reloader) override(cmd overrideCmd, apply func(*config.Document, config.Node) (string, error)) {
	next, err := r.ov.change(cmd.req, r.doc, time.Now())
	if err != nil {
		cmd.done <- overrideResult{list: r.ov.list(), err: err}
		return
	}
	if sameOverrides(r.ov, next) {
		cmd.done <- overrideResult{list: r.ov.list()}
		return
	}
	trigger := "ctl reset"
	if cmd.req.Kind != admin.OverrideReset {
		trigger = fmt.Sprintf("ctl %s %s %d", cmd.req.Kind, cmd.req.Name, *cmd.req.Value)
	}
	res := &ReloadStatus{At: time.Now(), Trigger: trigger, Revision: string(r.rev)}
	n, err := r.node(r.doc)
	prev := r.ov
	r.ov = next
	var changed string
	if err == nil {
		changed, err = apply(r.doc, n)
	}
	if err != nil {
		r.ov = prev
		res.Result, res.Error = ReloadFailed, errorText(err)
		r.record(res, "")
		cmd.done <- overrideResult{list: r.ov.list(), err: &admin.StatusError{Status: http.StatusConflict, Err: err}}
		return
	}
	res.Result = ReloadApplied
	r.record(res, changed)
	cmd.done <- overrideResult{list: r.ov.list()}
}

// sameOverrides reports whether a and b set the same values (their
// times aside).
func sameOverrides(a, b overrides) bool {
	eq := func(x, y OverrideStatus) bool { return x.Value == y.Value }
	return maps.EqualFunc(a.weights, b.weights, eq) && maps.EqualFunc(a.dials, b.dials, eq)
}
