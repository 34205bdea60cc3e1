package dns

import (
	"sync/atomic"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// The label values of the counters: a fixed set, so that no query can
// create a series.
var (
	qtypeNames = [...]string{"A", "AAAA", "SOA", "NS", "ANY", "other"}
	rcodeNames = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other"}
	protoNames = [...]string{"udp", "tcp"}
)

func qtypeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeSOA:
		return 2
	case dns.TypeNS:
		return 3
	case dns.TypeANY:
		return 4
	}
	return 5
}

func rcodeIndex(rc int) int {
	switch rc {
	case dns.RcodeSuccess:
		return 0
	case dns.RcodeFormatError:
		return 1
	case dns.RcodeServerFailure:
		return 2
	case dns.RcodeNameError:
		return 3
	case dns.RcodeNotImplemented:
		return 4
	case dns.RcodeRefused:
		return 5
	case dns.RcodeBadVers:
		return 6
	}
	return 7
}

// counters are the server's totals, updated with atomics on the query
// path and read by Stats and the Prometheus collector.
type counters struct {
	queries    [len(protoNames)][len(qtypeNames)]atomic.Int64
	responses  [len(protoNames)][len(qtypeNames)][len(rcodeNames)]atomic.Int64
	malformed  [len(protoNames)]atomic.Int64
	truncated  atomic.Int64
	rrlDropped atomic.Int64
	rrlSlipped atomic.Int64
}

// Stats are the server's totals since it started, for /status.
type Stats struct {
	// Queries by query type (A, AAAA, SOA, NS, ANY, other) and by
	// transport.
	Queries    map[string]int64 `json:"queries"`
	QueriesUDP int64            `json:"queries_udp"`
	QueriesTCP int64            `json:"queries_tcp"`
	// Responses sent, by response code (NOERROR, NXDOMAIN, REFUSED, …);
	// every code of the list is present.
	Responses map[string]int64 `json:"responses"`
	// Malformed packets: not a DNS query, dropped (UDP) or answered
	// FORMERR (TCP).
	Malformed int64 `json:"malformed"`
	// Truncated answers that did not fit the client's UDP size.
	Truncated int64 `json:"truncated"`
	// RRLDropped answers were dropped by rate limiting, RRLSlipped sent
	// empty and truncated instead.
	RRLDropped int64 `json:"rrl_dropped"`
	RRLSlipped int64 `json:"rrl_slipped"`
}

// Stats returns the totals.
func (s *Server) Stats() Stats {
	c := &s.counters
	st := Stats{Queries: map[string]int64{}, Responses: map[string]int64{},
		Truncated: c.truncated.Load(), RRLDropped: c.rrlDropped.Load(), RRLSlipped: c.rrlSlipped.Load()}
	for p := range protoNames {
		st.Malformed += c.malformed[p].Load()
		for q, qn := range qtypeNames {
			n := c.queries[p][q].Load()
			st.Queries[qn] += n
			if p == 0 {
				st.QueriesUDP += n
			} else {
				st.QueriesTCP += n
			}
			for r, rn := range rcodeNames {
				st.Responses[rn] += c.responses[p][q][r].Load()
			}
		}
	}
	return st
}

var (
	queriesDesc = prometheus.NewDesc("anyedge_dns_queries_total",
		"DNS queries received, by transport and query type.", []string{"protocol", "qtype"}, nil)
	responsesDesc = prometheus.NewDesc("anyedge_dns_responses_total",
		"DNS responses sent, by transport, query type and response code.", []string{"protocol", "qtype", "rcode"}, nil)
	malformedDesc = prometheus.NewDesc("anyedge_dns_malformed_total",
		"Packets that were not a DNS query.", []string{"protocol"}, nil)
	truncatedDesc = prometheus.NewDesc("anyedge_dns_truncated_total",
		"UDP answers sent truncated because they did not fit the client's size.", nil, nil)
	rrlDesc = prometheus.NewDesc("anyedge_dns_rrl_limited_total",
		"UDP answers over the rate limit, dropped or sent truncated (slipped).", []string{"reason"}, nil)
)

// collector exports the counters.
type collector struct{ c *counters }

// Describe implements prometheus.Collector.
func (collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queriesDesc
	ch <- responsesDesc
	ch <- malformedDesc
	ch <- truncatedDesc
	ch <- rrlDesc
}

// Collect implements prometheus.Collector.
func (x collector) Collect(ch chan<- prometheus.Metric) {
	c := x.c
	for p, pn := range protoNames {
		ch <- prometheus.MustNewConstMetric(malformedDesc, prometheus.CounterValue, float64(c.malformed[p].Load()), pn)
		for q, qn := range qtypeNames {
			ch <- prometheus.MustNewConstMetric(queriesDesc, prometheus.CounterValue, float64(c.queries[p][q].Load()), pn, qn)
			for r, rn := range rcodeNames {
				if v := c.responses[p][q][r].Load(); v > 0 {
					ch <- prometheus.MustNewConstMetric(responsesDesc, prometheus.CounterValue, float64(v), pn, qn, rn)
				}
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(truncatedDesc, prometheus.CounterValue, float64(c.truncated.Load()))
	ch <- prometheus.MustNewConstMetric(rrlDesc, prometheus.CounterValue, float64(c.rrlDropped.Load()), "dropped")
	ch <- prometheus.MustNewConstMetric(rrlDesc, prometheus.CounterValue, float64(c.rrlSlipped.Load()), "slipped")
}
