package config

import (
	"slices"
	"time"
)

// Defaults documented on the schema fields. Values of zero in a document are
// replaced by these; a zero that matters (such as weight 0) is expressed by a
// pointer field.
const (
	defaultClientAffinity    = "none"
	defaultEarlyData         = "tls"
	defaultTCPIdleTimeout    = 340 * time.Second
	defaultUDPIdleTimeout    = 30 * time.Second
	defaultTrafficDial       = 100
	defaultWeight            = 128
	defaultHealthProtocol    = "tcp"
	defaultHealthPath        = "/"
	defaultStatusCodes       = "200-399"
	defaultHealthInterval    = 10 * time.Second
	defaultHealthTimeout     = 5 * time.Second
	defaultHealthThreshold   = 3
	defaultDNSName           = "."
	defaultDNSType           = "A"
	defaultDNSRcode          = "NOERROR"
	defaultPKIDir            = "/etc/anyedge/pki"
	defaultPoPAdmin          = "127.0.0.1:9180"
	defaultRegionAdmin       = "127.0.0.1:9181"
	defaultBackboneConns     = 2
	defaultBackboneKeepAlive = 1 * time.Second
	defaultBackboneIdle      = 3 * time.Second
	defaultUDPMaxFlows       = 262144
	defaultUDPMaxFlowsPerSrc = 1024
	defaultBGPHoldDown       = 2 * time.Second
	defaultBGPHoldTime       = 9 * time.Second
	defaultBGPKeepalive      = 3 * time.Second
	defaultDrainBGPGrace     = 5 * time.Second
	defaultDrainTimeout      = 60 * time.Second
)

// WithDefaults returns a deep copy of d with every unset field given its
// documented default. d is not modified; applying it twice changes nothing.
func (d Document) WithDefaults() Document {
	out := d.clone()
	for ai := range out.Accelerators {
		a := &out.Accelerators[ai]
		for li := range a.Listeners {
			l := &a.Listeners[li]
			if l.ClientAffinity == "" {
				l.ClientAffinity = defaultClientAffinity
			}
			if l.EarlyData == "" && l.Protocol == "tcp" {
				l.EarlyData = defaultEarlyData
			}
			if l.IdleTimeout == 0 {
				switch l.Protocol {
				case "tcp":
					l.IdleTimeout = defaultTCPIdleTimeout
				case "udp":
					l.IdleTimeout = defaultUDPIdleTimeout
				}
			}
			for ri := range l.PortRanges {
				if l.PortRanges[ri].To == 0 {
					l.PortRanges[ri].To = l.PortRanges[ri].From
				}
			}
			for gi := range l.EndpointGroups {
				g := &l.EndpointGroups[gi]
				if g.TrafficDial == nil {
					g.TrafficDial = ptr(defaultTrafficDial)
				}
				g.HealthCheck = g.HealthCheck.withDefaults()
				for ei := range g.Endpoints {
					if g.Endpoints[ei].Weight == nil {
						g.Endpoints[ei].Weight = ptr(defaultWeight)
					}
				}
			}
		}
	}

	t := &out.Topology
	if t.PKIDir == "" {
		t.PKIDir = defaultPKIDir
	}
	for pi := range t.PoPs {
		p := &t.PoPs[pi]
		setDefault(&p.Admin, defaultPoPAdmin)
		setDefault(&p.Backbone.Connections, defaultBackboneConns)
		setDefault(&p.Backbone.KeepAlivePeriod, defaultBackboneKeepAlive)
		setDefault(&p.Backbone.IdleTimeout, defaultBackboneIdle)
		setDefault(&p.UDP.MaxFlows, defaultUDPMaxFlows)
		setDefault(&p.UDP.MaxFlowsPerSource, defaultUDPMaxFlowsPerSrc)
		setDefault(&p.BGP.HoldDown, defaultBGPHoldDown)
		for ni := range p.BGP.Neighbors {
			n := &p.BGP.Neighbors[ni]
			setDefault(&n.HoldTime, defaultBGPHoldTime)
			setDefault(&n.Keepalive, defaultBGPKeepalive)
		}
		setDefault(&p.Drain.BGPGrace, defaultDrainBGPGrace)
		setDefault(&p.Drain.Timeout, defaultDrainTimeout)
	}
	for ri := range t.Regions {
		r := &t.Regions[ri]
		setDefault(&r.Admin, defaultRegionAdmin)
		setDefault(&r.Backbone.Address, r.Backbone.Listen)
	}
	return out
}

// withDefaults fills the unset fields of a health check.
func (h HealthCheck) withDefaults() HealthCheck {
	setDefault(&h.Protocol, defaultHealthProtocol)
	setDefault(&h.Path, defaultHealthPath)
	setDefault(&h.StatusCodes, defaultStatusCodes)
	setDefault(&h.DNSName, defaultDNSName)
	setDefault(&h.DNSType, defaultDNSType)
	setDefault(&h.DNSRcode, defaultDNSRcode)
	setDefault(&h.Interval, defaultHealthInterval)
	setDefault(&h.Timeout, defaultHealthTimeout)
	setDefault(&h.HealthyThreshold, defaultHealthThreshold)
	setDefault(&h.UnhealthyThreshold, defaultHealthThreshold)
	return h
}

// setDefault stores def in *v when *v is the zero value.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func ptr[T any](v T) *T { return &v }

// clonePtr copies the value behind p.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	return ptr(*p)
}

// clone returns a copy of d that shares no slice or pointer with it.
func (d Document) clone() Document {
	out := d
	out.Accelerators = slices.Clone(d.Accelerators)
	for ai := range out.Accelerators {
		a := &out.Accelerators[ai]
		a.IPAddresses = slices.Clone(a.IPAddresses)
		a.Prefixes = slices.Clone(a.Prefixes)
		a.Listeners = slices.Clone(a.Listeners)
		for li := range a.Listeners {
			l := &a.Listeners[li]
			l.PortRanges = slices.Clone(l.PortRanges)
			l.EndpointGroups = slices.Clone(l.EndpointGroups)
			for gi := range l.EndpointGroups {
				g := &l.EndpointGroups[gi]
				g.TrafficDial = clonePtr(g.TrafficDial)
				g.PortOverrides = slices.Clone(g.PortOverrides)
				g.Endpoints = slices.Clone(g.Endpoints)
				for ei := range g.Endpoints {
					g.Endpoints[ei].Weight = clonePtr(g.Endpoints[ei].Weight)
				}
			}
		}
	}
	out.Topology.PoPs = slices.Clone(d.Topology.PoPs)
	for pi := range out.Topology.PoPs {
		b := &out.Topology.PoPs[pi].BGP
		b.Neighbors = slices.Clone(b.Neighbors)
		b.Communities = slices.Clone(b.Communities)
		b.LargeCommunities = slices.Clone(b.LargeCommunities)
	}
	out.Topology.Regions = slices.Clone(d.Topology.Regions)
	return out
}
