package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge/bgp"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/healthcheck"
)

// The collectors below read the same typed counters that /status shows,
// at scrape time, so that /status and /metrics never disagree and the data
// path pays nothing for a metric beyond the atomic add it already does.
// The names are listed, with the AWS Global Accelerator mapping, in
// README "Metrics".

// newRegistry is a node's registry: the Go runtime and process collectors
// and anyedge_build_info.
func newRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if version == "" {
		version = "unknown"
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "anyedge_build_info", Help: "Always 1; the version label is the build's.",
		ConstLabels: prometheus.Labels{"version": version},
	}, func() float64 { return 1 }))
	return reg
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter[T int64 | uint64](d *prometheus.Desc, v T, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// regionCollector exports a region's backbone refusals, per-endpoint
// flows and dials, endpoint health and UDP counters.
type regionCollector struct {
	region  string
	m       *backbone.Metrics
	gw      *gateway.Gateway
	checker *healthcheck.Checker
}

var (
	handshakeRefusedDesc = prometheus.NewDesc("anyedge_backbone_handshakes_refused_total",
		"Backbone TLS handshakes the region refused, by reason.", []string{"reason"}, nil)
	streamsRefusedDesc = prometheus.NewDesc("anyedge_backbone_streams_refused_total",
		"Backbone streams the region answered with a refusal, by answer code.", []string{"reason"}, nil)
	regionFlowsDesc = prometheus.NewDesc("anyedge_region_active_flows",
		"Flows the region is serving, per endpoint and protocol.", []string{"region", "endpoint", "protocol"}, nil)
	regionDialsDesc = prometheus.NewDesc("anyedge_region_dials_total",
		"Endpoint dials (TCP connections, UDP sockets), per endpoint and protocol.", []string{"region", "endpoint", "protocol"}, nil)
	regionDialFailDesc = prometheus.NewDesc("anyedge_region_dial_failures_total",
		"Failed endpoint dials, by reason.", []string{"region", "endpoint", "reason"}, nil)
	regionDialTimeDesc = prometheus.NewDesc("anyedge_region_dial_duration_seconds",
		"How long successful endpoint dials took.", []string{"region", "endpoint"}, nil)
	endpointHealthyDesc = prometheus.NewDesc("anyedge_region_endpoint_healthy",
		"1 when the endpoint takes traffic (healthy or not yet probed) (GA HealthyEndpointCount when summed).", []string{"region", "endpoint"}, nil)
	endpointStateDesc = prometheus.NewDesc("anyedge_region_endpoint_state",
		"1 for the endpoint's current health state.", []string{"region", "endpoint", "state"}, nil)
	probeLatencyDesc = prometheus.NewDesc("anyedge_region_endpoint_probe_latency_seconds",
		"How long the endpoint's last health probe took.", []string{"region", "endpoint"}, nil)
	ejectionsDesc = prometheus.NewDesc("anyedge_region_endpoint_ejections_total",
		"Passive ejections (failed dials) that turned the endpoint unhealthy.", []string{"region", "endpoint"}, nil)
	regionUDPDesc = func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("anyedge_region_udp_"+name, help, append([]string{"region"}, labels...), nil)
	}
	rUDPReceivedDesc = regionUDPDesc("datagrams_received_total", "Datagrams read from edge connections.")
	rUDPToEPDesc     = regionUDPDesc("packets_to_endpoint_total", "UDP packets sent to endpoints.")
	rUDPFromEPDesc   = regionUDPDesc("packets_from_endpoint_total", "UDP packets received from endpoints and sent towards edges.")
	rUDPFallbackDesc = regionUDPDesc("fallback_packets_total", "Replies too large for a datagram that took the flow's stream.")
	rUDPUnknownDesc  = regionUDPDesc("unknown_flow_datagrams_total", "Datagrams naming no open flow of their connection.")
	rUDPDroppedDesc  = regionUDPDesc("dropped_packets_total", "UDP packets the region dropped, by place.", "place")
)

// handshakeReasons are the labels of pki.RejectReason.
var handshakeReasons = []string{"no_certificate", "expired", "self_signed", "unknown_authority",
	"unknown_node", "wrong_name", "not_operator", "bad_certificate", "other"}

// Describe implements prometheus.Collector.
func (c regionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{handshakeRefusedDesc, streamsRefusedDesc, regionFlowsDesc, regionDialsDesc,
		regionDialFailDesc, regionDialTimeDesc, endpointHealthyDesc, endpointStateDesc, probeLatencyDesc, ejectionsDesc,
		rUDPReceivedDesc, rUDPToEPDesc, rUDPFromEPDesc, rUDPFallbackDesc, rUDPUnknownDesc, rUDPDroppedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c regionCollector) Collect(ch chan<- prometheus.Metric) {
	// Every known reason is exported, zeros included, so that a series
	// exists before its first event.
	hs := c.m.HandshakeRefused()
	if hs == nil {
		hs = map[string]int64{}
	}
	for _, reason := range handshakeReasons {
		if _, ok := hs[reason]; !ok {
			hs[reason] = 0
		}
	}
	for reason, n := range hs {
		ch <- counter(handshakeRefusedDesc, n, reason)
	}
	streams := c.m.StreamsRefused()
	for code := wire.CodeBadHeader; code <= wire.CodeDraining; code++ {
		ch <- counter(streamsRefusedDesc, streams[code], code.Label())
	}
	for _, e := range c.gw.EndpointStats() {
		ch <- gauge(regionFlowsDesc, float64(e.ActiveTCP), c.region, e.ID, "tcp")
		ch <- gauge(regionFlowsDesc, float64(e.ActiveUDP), c.region, e.ID, "udp")
		ch <- counter(regionDialsDesc, e.DialsTCP, c.region, e.ID, "tcp")
		ch <- counter(regionDialsDesc, e.DialsUDP, c.region, e.ID, "udp")
		for _, code := range []wire.Code{wire.CodeDialRefused, wire.CodeDialTimeout, wire.CodeDialFailed} {
			ch <- counter(regionDialFailDesc, e.Failures[code], c.region, e.ID, code.Label())
		}
		buckets := make(map[float64]uint64, len(gateway.DialBuckets))
		for i, le := range gateway.DialBuckets {
			buckets[le] = e.DialBucketCounts[i]
		}
		total := e.DialBucketCounts[len(e.DialBucketCounts)-1]
		ch <- prometheus.MustNewConstHistogram(regionDialTimeDesc, total, e.DialSeconds, buckets, c.region, e.ID)
	}
	for _, st := range c.checker.Snapshot() {
		ch <- gauge(endpointHealthyDesc, b2f(st.State.Routable()), c.region, st.ID)
		for _, s := range []healthcheck.State{healthcheck.Unknown, healthcheck.Healthy, healthcheck.Unhealthy} {
			ch <- gauge(endpointStateDesc, b2f(st.State == s), c.region, st.ID, s.String())
		}
		ch <- gauge(probeLatencyDesc, st.Latency.Seconds(), c.region, st.ID)
		ch <- counter(ejectionsDesc, st.Ejections, c.region, st.ID)
	}
	u := c.gw.UDPStats()
	ch <- counter(rUDPReceivedDesc, u.Datagrams, c.region)
	ch <- counter(rUDPToEPDesc, u.ToEndpoint, c.region)
	ch <- counter(rUDPFromEPDesc, u.FromEndpoint, c.region)
	ch <- counter(rUDPFallbackDesc, u.FallbackToEdge, c.region)
	ch <- counter(rUDPUnknownDesc, u.UnknownFlow, c.region)
	ch <- counter(rUDPDroppedDesc, u.Dropped-u.DroppedSocket, c.region, "backbone")
	ch <- counter(rUDPDroppedDesc, u.DroppedSocket, c.region, "region_socket")
}

// edgeCollector exports an edge's listeners (edge/flow), readiness, drain
// state, backbone pools and BGP sessions.
type edgeCollector struct {
	en *edgeNode
	fc *flow.Collector
}

var (
	edgeReadyDesc    = prometheus.NewDesc("anyedge_edge_ready", "1 when the edge serves every accelerator and is not draining (/readyz).", nil, nil)
	edgeDrainingDesc = prometheus.NewDesc("anyedge_edge_draining", "1 while the edge drains.", nil, nil)
	accelReadyDesc   = prometheus.NewDesc("anyedge_edge_accelerator_ready",
		"1 when every listener of the accelerator is ready (its prefixes are announced).", []string{"accelerator"}, nil)
	listenerReadyDesc = prometheus.NewDesc("anyedge_edge_listener_ready",
		"1 when the listener has a reachable region with a healthy endpoint of weight above 0.", []string{"accelerator", "listener", "protocol"}, nil)
	listenerFailOpenDesc = prometheus.NewDesc("anyedge_edge_listener_fail_open",
		"1 when a region is reachable but none of the listener's endpoints is healthy.", []string{"accelerator", "listener", "protocol"}, nil)
	unknownFlowDesc = prometheus.NewDesc("anyedge_edge_udp_unknown_flow_datagrams_total",
		"Datagrams from regions that named no open UDP flow (dropped).", nil, nil)

	bbReachableDesc = prometheus.NewDesc("anyedge_backbone_region_reachable", "1 when a connection to the region is up.", []string{"region"}, nil)
	bbConnsDesc     = prometheus.NewDesc("anyedge_backbone_connections", "Connections of the pool to the region, by state.", []string{"region", "state"}, nil)
	bbRTTDesc       = prometheus.NewDesc("anyedge_backbone_rtt_seconds", "The region's routing RTT: the minimum RTT of its live connections over the last 10 s, with hysteresis.", []string{"region"}, nil)
	bbLossDesc      = prometheus.NewDesc("anyedge_backbone_loss_ratio", "Packets lost over packets sent on live connections to the region.", []string{"region"}, nil)
	bbStreamsDesc   = prometheus.NewDesc("anyedge_backbone_open_streams", "Flow streams open to the region.", []string{"region"}, nil)
	bbDialsDesc     = prometheus.NewDesc("anyedge_backbone_dials_total", "Connection attempts to the region.", []string{"region"}, nil)
	bbDialFailDesc  = prometheus.NewDesc("anyedge_backbone_dial_failures_total", "Failed connection attempts to the region, by reason.", []string{"region", "reason"}, nil)
	bbReconnDesc    = prometheus.NewDesc("anyedge_backbone_reconnects_total", "Established connections to the region that died and were redialled.", []string{"region"}, nil)
	bbRetiredDesc   = prometheus.NewDesc("anyedge_backbone_connections_retired_total",
		"Live connections to the region the pool retired and replaced, by reason: rtt_rise (the path's RTT stayed far above the connection's minimum).",
		[]string{"region", "reason"}, nil)
	bbDrainingDesc = prometheus.NewDesc("anyedge_backbone_connections_draining",
		"Retired connections to the region still open for the flows they carry.", []string{"region"}, nil)
	bbDroppedDesc = prometheus.NewDesc("anyedge_backbone_datagrams_dropped_total",
		"Datagrams from the region dropped at the edge before reaching a flow (backlog full or no handler).", []string{"region"}, nil)
	bbFECDesc = prometheus.NewDesc("anyedge_backbone_fec_packets_total",
		"Forward error correction on the pool's sockets, by event: protected (sent in a group), parity (parity frames sent), "+
			"lost (from the region, missing in a group), recovered (of those, rebuilt), unrecovered (their group lost two or more).",
		[]string{"region", "event"}, nil)

	bgpUpDesc       = prometheus.NewDesc("anyedge_bgp_session_established", "1 when the BGP session is established.", []string{"peer"}, nil)
	bgpStateDesc    = prometheus.NewDesc("anyedge_bgp_session_state", "1 for the BGP session's current state.", []string{"peer", "state"}, nil)
	bgpUptimeDesc   = prometheus.NewDesc("anyedge_bgp_session_uptime_seconds", "How long the session has been established.", []string{"peer"}, nil)
	bgpPrefixesDesc = prometheus.NewDesc("anyedge_bgp_prefixes_advertised", "Prefixes advertised to the peer.", []string{"peer"}, nil)
	bgpAnnouncedDes = prometheus.NewDesc("anyedge_bgp_prefixes_announced", "Prefixes in the speaker's RIB (announced to every peer).", nil, nil)

	flWrittenDesc   = prometheus.NewDesc("anyedge_flowlog_records_written_total", "Flow-log lines written.", nil, nil)
	flDroppedDesc   = prometheus.NewDesc("anyedge_flowlog_records_dropped_total", "Flow-log records lost, by reason: queue_full (the writer fell behind) or write_error.", []string{"reason"}, nil)
	flSampledDesc   = prometheus.NewDesc("anyedge_flowlog_records_sampled_out_total", "Flow records left out by sampling.", nil, nil)
	flRotationsDesc = prometheus.NewDesc("anyedge_flowlog_rotations_total", "Flow-log files reopened after a rename or rotated by size.", nil, nil)
)

var bgpStates = []string{"idle", "connect", "active", "opensent", "openconfirm", "established"}

// Describe implements prometheus.Collector.
func (c edgeCollector) Describe(ch chan<- *prometheus.Desc) {
	c.fc.Describe(ch)
	for _, d := range []*prometheus.Desc{edgeReadyDesc, edgeDrainingDesc, accelReadyDesc, listenerReadyDesc, listenerFailOpenDesc,
		unknownFlowDesc, bbReachableDesc, bbConnsDesc, bbRTTDesc, bbLossDesc, bbStreamsDesc, bbDialsDesc, bbDialFailDesc,
		bbReconnDesc, bbRetiredDesc, bbDrainingDesc, bbDroppedDesc, bbFECDesc, bgpUpDesc, bgpStateDesc, bgpUptimeDesc, bgpPrefixesDesc, bgpAnnouncedDes,
		flWrittenDesc, flDroppedDesc, flSampledDesc, flRotationsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c edgeCollector) Collect(ch chan<- prometheus.Metric) {
	c.fc.Collect(ch)
	en := c.en
	if st := en.status.Load(); st != nil {
		ch <- gauge(edgeReadyDesc, b2f(st.Ready))
		ch <- gauge(edgeDrainingDesc, b2f(st.Draining))
		for _, a := range st.Accelerators {
			ch <- gauge(accelReadyDesc, b2f(a.Ready), a.Name)
		}
		for _, l := range st.Listeners {
			ch <- gauge(listenerReadyDesc, b2f(l.Ready), l.Accelerator, l.Key, l.Protocol)
			ch <- gauge(listenerFailOpenDesc, b2f(l.FailOpen), l.Accelerator, l.Key, l.Protocol)
		}
	}
	ch <- counter(unknownFlowDesc, en.fwd.UnknownFlowDatagrams())
	for _, cl := range en.live.Load().clients {
		r := cl.Region()
		s := cl.Stats()
		ch <- gauge(bbReachableDesc, b2f(s.Live > 0), r)
		byState := map[backbone.SlotState]int{}
		for _, sl := range s.Slots {
			byState[sl.State]++
		}
		for _, state := range backbone.SlotStates {
			ch <- gauge(bbConnsDesc, float64(byState[state]), r, state.String())
		}
		ch <- gauge(bbRTTDesc, s.RoutingRTT.Seconds(), r)
		ch <- gauge(bbLossDesc, s.LossRatio, r)
		ch <- gauge(bbStreamsDesc, float64(s.OpenStreams), r)
		ch <- counter(bbDialsDesc, s.Dials, r)
		for _, f := range backbone.DialFailures {
			ch <- counter(bbDialFailDesc, s.DialFailures[f], r, f.String())
		}
		ch <- counter(bbReconnDesc, s.Lost, r)
		for _, rr := range backbone.RetireReasons {
			ch <- counter(bbRetiredDesc, s.Retired[rr], r, rr.String())
		}
		ch <- gauge(bbDrainingDesc, float64(s.Draining), r)
		ch <- counter(bbDroppedDesc, s.DroppedDatagrams, r)
		fs := cl.FECStats()
		for _, e := range []struct {
			event string
			n     uint64
		}{{"protected", fs.Protected}, {"parity", fs.ParitySent}, {"lost", fs.Lost}, {"recovered", fs.Recovered},
			{"unrecovered", fs.Unrecovered}} {
			ch <- counter(bbFECDesc, e.n, r, e.event)
		}
	}
	if en.speaker != nil {
		collectBGP(ch, en.speaker)
	}
	if en.flowLogs != nil {
		s := en.flowLogs.Stats()
		ch <- counter(flWrittenDesc, s.Written)
		ch <- counter(flDroppedDesc, s.QueueFull, "queue_full")
		ch <- counter(flDroppedDesc, s.WriteErrors, "write_error")
		ch <- counter(flSampledDesc, s.SampledOut)
		ch <- counter(flRotationsDesc, s.Rotations)
	}
}

func collectBGP(ch chan<- prometheus.Metric, s *bgp.Speaker) {
	for _, p := range s.Peers() {
		peer := p.Address.String()
		ch <- gauge(bgpUpDesc, b2f(p.State == "established"), peer)
		for _, state := range bgpStates {
			ch <- gauge(bgpStateDesc, b2f(p.State == state), peer, state)
		}
		ch <- gauge(bgpUptimeDesc, p.Uptime.Seconds(), peer)
		ch <- gauge(bgpPrefixesDesc, float64(p.PrefixesAdvertised), peer)
	}
	ch <- gauge(bgpAnnouncedDes, float64(len(s.Announced())))
}
