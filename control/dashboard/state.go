package dashboard

import (
	"encoding/json"
	"math"
	"time"
)

// fleetState is what the dashboard knows of every node, and the history.
// Only Run's goroutine touches it (New builds a first, empty one).
type fleetState struct {
	nodes []nodeState
	hist  *history
}

// nodeState is the latest of one node.
type nodeState struct {
	t      Target
	polled bool // a poll has finished
	ok     bool // the latest poll succeeded
	err    string
	status json.RawMessage // the latest good status; kept while unreachable
	okAt   time.Time
	// counters are the node's cumulative counters at okAt, rates their
	// per-second rates since the good poll before, gauges its current
	// values (backbone RTT); all keyed as in statusView.metrics.
	counters map[string]float64
	rates    map[string]float64
	gauges   map[string]float64
	// sampled are the counters at the last history sample (taken from
	// the poll at sampledAt), sampleRates the rates that sample recorded.
	sampled     map[string]float64
	sampledAt   time.Time
	sampleRates map[string]float64
}

func newFleetState(opts Options, targets []Target) *fleetState {
	st := &fleetState{hist: newHistory(int(opts.History / opts.Interval))}
	for _, t := range targets {
		st.nodes = append(st.nodes, nodeState{t: t})
	}
	return st
}

// apply records a poll; it reports whether the node was reachable before
// and is now (a node not yet polled counts as reachable).
func (st *fleetState) apply(r result) (was, now bool) {
	n := &st.nodes[r.i]
	was = n.ok || !n.polled
	n.polled = true
	if r.err != nil {
		n.ok, n.err = false, r.err.Error()
		n.rates = nil
		return was, false
	}
	var v statusView
	if err := json.Unmarshal(r.body, &v); err != nil {
		n.ok, n.err = false, "status: "+err.Error()
		n.rates = nil
		return was, false
	}
	counters, gauges := v.metrics()
	rates := map[string]float64{}
	if dt := r.at.Sub(n.okAt).Seconds(); n.counters != nil && dt > 0 {
		for k, c := range counters {
			if p, ok := n.counters[k]; ok && c >= p {
				rates[k] = (c - p) / dt
			}
		}
	}
	n.ok, n.err, n.status, n.okAt = true, "", json.RawMessage(r.body), r.at
	n.counters, n.rates, n.gauges = counters, rates, gauges
	return was, true
}

// sample adds the rates and gauges of every reachable node to the history,
// as series "NODE/KEY". A rate is taken over the time since the previous
// sample, so a burst between two polls is never lost.
func (st *fleetState) sample(now time.Time) {
	values := map[string]float64{}
	for i := range st.nodes {
		n := &st.nodes[i]
		if !n.ok {
			continue
		}
		if n.okAt.After(n.sampledAt) {
			dt := n.okAt.Sub(n.sampledAt).Seconds()
			rates := map[string]float64{}
			for k, c := range n.counters {
				if p, ok := n.sampled[k]; ok && c >= p {
					rates[k] = (c - p) / dt
				}
			}
			n.sampled, n.sampledAt, n.sampleRates = n.counters, n.okAt, rates
		}
		for k, v := range n.sampleRates {
			values[n.t.Name+"/"+k] = v
		}
		for k, v := range n.gauges {
			values[n.t.Name+"/"+k] = v
		}
	}
	st.hist.add(now, values)
}

// nodeEvent is one node on the page.
type nodeEvent struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	Addr  string `json:"addr,omitempty"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Updated is when Status was read; zero before the first good poll.
	Updated time.Time          `json:"updated"`
	Status  json.RawMessage    `json:"status"`
	Rates   map[string]float64 `json:"rates"`
}

// nodesEvent is the "nodes" event: every node's latest state.
type nodesEvent struct {
	Title      string      `json:"title"`
	IntervalMS int64       `json:"interval_ms"`
	Nodes      []nodeEvent `json:"nodes"`
}

func (st *fleetState) nodesEvent(title string, interval time.Duration) nodesEvent {
	ev := nodesEvent{Title: title, IntervalMS: interval.Milliseconds(), Nodes: make([]nodeEvent, 0, len(st.nodes))}
	for _, n := range st.nodes {
		ne := nodeEvent{Name: n.t.Name, Role: n.t.Role, Addr: n.t.Addr, OK: n.ok, Error: n.err,
			Updated: n.okAt, Status: n.status, Rates: n.rates}
		if !n.polled {
			ne.Error = "not polled yet"
		}
		if ne.Status == nil {
			ne.Status = json.RawMessage("null")
		}
		ev.Nodes = append(ev.Nodes, ne)
	}
	return ev
}

// historyEvent is the "history" event: sample times (Unix milliseconds)
// and every series over them, null where a value is missing.
type historyEvent struct {
	Times  []int64               `json:"t"`
	Series map[string][]*float64 `json:"series"`
}

func (st *fleetState) historyEvent() historyEvent { return st.hist.event() }

// statusView is the part of a node's status the dashboard derives numbers
// from; the page reads the rest itself.
type statusView struct {
	Regions []struct {
		Name      string  `json:"name"`
		Reachable bool    `json:"reachable"`
		RTTMillis float64 `json:"rtt_ms"`
	} `json:"regions"`
	Flows struct {
		NewFlows *float64 `json:"new_flows"`
	} `json:"flows"`
	Listeners []struct {
		Key      string  `json:"key"`
		NewFlows float64 `json:"new_flows"`
		BytesIn  float64 `json:"bytes_in"`
		BytesOut float64 `json:"bytes_out"`
	} `json:"listeners"`
	DNS *struct {
		QueriesUDP float64 `json:"queries_udp"`
		QueriesTCP float64 `json:"queries_tcp"`
	} `json:"dns"`
}

// metrics returns the counters whose rates the page shows — "flows" (new
// flows of the node), "KEY/new_flows", "KEY/bytes_in", "KEY/bytes_out"
// per listener, "dns/queries" (queries to the edge's DNS server, UDP and
// TCP) — and the gauges it graphs: "rtt/REGION" in milliseconds,
// for each reachable region.
func (v statusView) metrics() (counters, gauges map[string]float64) {
	counters, gauges = map[string]float64{}, map[string]float64{}
	if v.Flows.NewFlows != nil {
		counters["flows"] = *v.Flows.NewFlows
	}
	for _, l := range v.Listeners {
		counters[l.Key+"/new_flows"] = l.NewFlows
		counters[l.Key+"/bytes_in"] = l.BytesIn
		counters[l.Key+"/bytes_out"] = l.BytesOut
	}
	if v.DNS != nil {
		counters["dns/queries"] = v.DNS.QueriesUDP + v.DNS.QueriesTCP
	}
	for _, r := range v.Regions {
		if r.Reachable {
			gauges["rtt/"+r.Name] = r.RTTMillis
		}
	}
	return counters, gauges
}

// history is a ring of samples: times and, per series, a value or NaN.
type history struct {
	times  []time.Time
	series map[string][]float64
	next   int // index of the next sample
	n      int // samples taken, up to len(times)
}

func newHistory(size int) *history {
	return &history{times: make([]time.Time, max(size, 2)), series: map[string][]float64{}}
}

func (h *history) add(at time.Time, values map[string]float64) {
	i := h.next
	h.times[i] = at
	for k, s := range h.series {
		v, ok := values[k]
		if !ok {
			v = math.NaN()
		}
		s[i] = v
	}
	for k, v := range values {
		if _, ok := h.series[k]; ok {
			continue
		}
		s := make([]float64, len(h.times))
		for j := range s {
			s[j] = math.NaN()
		}
		s[i] = v
		h.series[k] = s
	}
	h.next = (i + 1) % len(h.times)
	h.n = min(h.n+1, len(h.times))
	// A series without a value in the whole window is dropped.
	for k, s := range h.series {
		if allNaN(s) {
			delete(h.series, k)
		}
	}
}

func allNaN(s []float64) bool {
	for _, v := range s {
		if !math.IsNaN(v) {
			return false
		}
	}
	return true
}

func (h *history) event() historyEvent {
	ev := historyEvent{Times: make([]int64, 0, h.n), Series: make(map[string][]*float64, len(h.series))}
	first := (h.next - h.n + len(h.times)) % len(h.times)
	for j := range h.n {
		ev.Times = append(ev.Times, h.times[(first+j)%len(h.times)].UnixMilli())
	}
	for k, s := range h.series {
		out := make([]*float64, h.n)
		for j := range h.n {
			if v := s[(first+j)%len(h.times)]; !math.IsNaN(v) {
				out[j] = &v
			}
		}
		ev.Series[k] = out
	}
	return ev
}
