package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/healthcheck"
)

// regionCollector exports a region's backbone refusals, flows and endpoint
// health.
type regionCollector struct {
	m       *backbone.Metrics
	gw      *gateway.Gateway
	checker *healthcheck.Checker
}

var (
	handshakeRefusedDesc = prometheus.NewDesc("anyedge_backbone_handshakes_refused_total",
		"Backbone TLS handshakes refused, by reason.", []string{"reason"}, nil)
	streamsRefusedDesc = prometheus.NewDesc("anyedge_backbone_streams_refused_total",
		"Backbone streams answered with a refusal code.", []string{"code"}, nil)
	regionFlowsDesc = prometheus.NewDesc("anyedge_region_active_flows",
		"Flows the region is serving.", nil, nil)
	endpointHealthyDesc = prometheus.NewDesc("anyedge_endpoint_healthy",
		"1 when the endpoint takes traffic (healthy or not yet probed).", []string{"endpoint"}, nil)
)

// Describe implements prometheus.Collector.
func (c regionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- handshakeRefusedDesc
	ch <- streamsRefusedDesc
	ch <- regionFlowsDesc
	ch <- endpointHealthyDesc
}

// Collect implements prometheus.Collector.
func (c regionCollector) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range c.m.HandshakeRefused() {
		ch <- prometheus.MustNewConstMetric(handshakeRefusedDesc, prometheus.CounterValue, float64(n), reason)
	}
	for code, n := range c.m.StreamsRefused() {
		ch <- prometheus.MustNewConstMetric(streamsRefusedDesc, prometheus.CounterValue, float64(n), code.String())
	}
	ch <- prometheus.MustNewConstMetric(regionFlowsDesc, prometheus.GaugeValue, float64(c.gw.ActiveFlows()))
	for _, st := range c.checker.Snapshot() {
		v := 0.0
		if st.State.Routable() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(endpointHealthyDesc, prometheus.GaugeValue, v, st.ID)
	}
}
