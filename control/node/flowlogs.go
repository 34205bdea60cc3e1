package node

import (
	"context"
	"log/slog"
	"net"
	"strconv"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/flowlog"
	"github.com/anyedge/anyedge/edge"
)

// startFlowLogs opens the PoP's flow log when enabled, makes it the sink of
// every listener's meter and starts its writer. The writer outlives the
// data path: stop, called once the edge's components have returned, writes
// what the last flows reported and closes the file. It returns a nil
// writer (and a no-op stop) when flow logs are off.
func startFlowLogs(n config.Node, listeners []edge.Listener, endpoints func() map[string]gateway.Endpoint, log *slog.Logger) (*flowlog.Writer, func(), error) {
	fl := n.PoP.FlowLogs
	if !fl.Enabled {
		return nil, func() {}, nil
	}
	w, err := flowlog.New(flowlog.Config{
		Path: fl.Path, SampleRate: fl.SampleRate, QueueSize: fl.QueueSize,
		MaxSize: int64(fl.MaxSizeMB) << 20, MaxFiles: fl.MaxFiles, PoP: n.Name, Logger: log,
		Endpoint: func(region, id string, port uint16) (string, uint16, bool) {
			e, ok := endpoints()[region+"/"+id]
			if !ok {
				return "", 0, false
			}
			target, ok := e.Target(port)
			if !ok {
				return "", 0, false
			}
			host, p, err := net.SplitHostPort(target)
			if err != nil {
				return "", 0, false
			}
			pn, err := strconv.ParseUint(p, 10, 16)
			return host, uint16(pn), err == nil
		},
	})
	if err != nil {
		return nil, nil, err
	}
	for _, l := range listeners {
		l.Meter.SetSink(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	log.Info("flow logs", "path", fl.Path, "sample_rate", fl.SampleRate)
	return w, func() {
		cancel()
		<-done
	}, nil
}

// flowEndpoints maps "region/id" to each endpoint of the regions the
// listeners of doc route to: what a flow log record names.
func flowEndpoints(doc *config.Document) (map[string]gateway.Endpoint, error) {
	eps := map[string]gateway.Endpoint{}
	for _, r := range usedRegions(doc) {
		list, _, err := regionParts(doc, r.Name)
		if err != nil {
			return nil, err
		}
		for _, e := range list {
			eps[r.Name+"/"+e.ID] = e
		}
	}
	return eps, nil
}

// FlowLogStatus are the flow log's counters.
type FlowLogStatus struct {
	Written    uint64 `json:"written"`
	QueueFull  uint64 `json:"dropped_queue_full"`
	WriteError uint64 `json:"dropped_write_error"`
	SampledOut uint64 `json:"sampled_out"`
	Rotations  uint64 `json:"rotations"`
}

func flowLogStatus(w *flowlog.Writer) *FlowLogStatus {
	if w == nil {
		return nil
	}
	s := w.Stats()
	return &FlowLogStatus{Written: s.Written, QueueFull: s.QueueFull, WriteError: s.WriteErrors, SampledOut: s.SampledOut, Rotations: s.Rotations}
}
