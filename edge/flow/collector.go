package flow

import "github.com/prometheus/client_golang/prometheus"

var listenerLabels = []string{"accelerator", "listener", "protocol"}

func desc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc("anyedge_edge_"+name, help, append(append([]string(nil), listenerLabels...), extra...), nil)
}

var (
	flowsDesc       = desc("flows_total", "New flows the edge took (GA NewFlowCount).")
	activeDesc      = desc("active_flows", "Flows open now.")
	bytesInDesc     = desc("bytes_in_total", "Bytes received from clients (GA ProcessedBytesIn).")
	bytesOutDesc    = desc("bytes_out_total", "Bytes sent to clients (GA ProcessedBytesOut).")
	packetsInDesc   = desc("packets_in_total", "Packets received from clients (TCP: segments, counted when a flow ends).")
	packetsOutDesc  = desc("packets_out_total", "Packets sent to clients (TCP: segments, counted when a flow ends).")
	closedDesc      = desc("flows_closed_total", "Served flows that ended, by reason.", "reason")
	refusedDesc     = desc("flows_refused_total", "Flows refused or failed before they were served, by reason.", "reason")
	retriesDesc     = desc("flow_retries_total", "Extra attempts after a refused or failed attempt, or a slow answer.")
	hedgesDesc      = desc("flow_hedges_total", "Extra attempts started in parallel because an answer was slow.")
	earlyDesc       = desc("flows_early_data_total", "Flows that sent client bytes with their setup, before the region's answer.")
	dgramInDesc     = desc("udp_datagrams_in_total", "Client packets the backbone carried as QUIC datagrams.")
	dgramOutDesc    = desc("udp_datagrams_out_total", "Replies the backbone carried as QUIC datagrams.")
	fallbackInDesc  = desc("udp_fallback_packets_in_total", "Client packets too large for a datagram that took the flow's stream.")
	fallbackOutDesc = desc("udp_fallback_packets_out_total", "Replies too large for a datagram that came on the flow's stream.")
	droppedDesc     = desc("udp_dropped_packets_total", "Client UDP packets and replies dropped at the edge, by place.", "place")
)

// Collector exports the counters of the meters meters returns (called at
// every scrape, so that the set may change with the configuration).
type Collector struct {
	meters func() []*Meter
}

// NewCollector returns a collector of the meters that meters returns.
func NewCollector(meters func() []*Meter) *Collector { return &Collector{meters: meters} }

var _ prometheus.Collector = (*Collector)(nil)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{flowsDesc, activeDesc, bytesInDesc, bytesOutDesc, packetsInDesc, packetsOutDesc,
		closedDesc, refusedDesc, retriesDesc, hedgesDesc, earlyDesc, dgramInDesc, dgramOutDesc,
		fallbackInDesc, fallbackOutDesc, droppedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.meters() {
		l := m.Listener()
		s := m.Snapshot()
		emit := func(d *prometheus.Desc, t prometheus.ValueType, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, t, v, append([]string{l.Accelerator, l.Key, l.Protocol}, extra...)...)
		}
		counter := func(d *prometheus.Desc, v uint64, extra ...string) {
			emit(d, prometheus.CounterValue, float64(v), extra...)
		}
		counter(flowsDesc, uint64(s.Flows))
		emit(activeDesc, prometheus.GaugeValue, float64(s.Active))
		counter(bytesInDesc, s.BytesIn)
		counter(bytesOutDesc, s.BytesOut)
		counter(packetsInDesc, s.PacketsIn)
		counter(packetsOutDesc, s.PacketsOut)
		for _, r := range Reasons {
			d := closedDesc
			if r.Refused() {
				d = refusedDesc
			}
			counter(d, s.Ended(r), r.String())
		}
		counter(retriesDesc, s.Retries)
		counter(hedgesDesc, s.Hedges)
		if l.Protocol != "udp" {
			counter(earlyDesc, s.EarlyData)
			continue
		}
		counter(dgramInDesc, s.DatagramsIn)
		counter(dgramOutDesc, s.DatagramsOut)
		counter(fallbackInDesc, s.FallbackIn)
		counter(fallbackOutDesc, s.FallbackOut)
		for _, p := range Places {
			counter(droppedDesc, s.Dropped[p], p.String())
		}
	}
}
