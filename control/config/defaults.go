package config

import (
	"slices"
	"strings"
	"time"

	"github.com/anyedge/anyedge/edge/tlsterm"
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
	defaultBackboneConns     = 4
	defaultBackboneKeepAlive = 1 * time.Second
	defaultStripeLanes       = 4
	defaultStripeAfter       = 256 << 10
	defaultStripeMinRTT      = 20 * time.Millisecond
	defaultFECMinRTT         = 20 * time.Millisecond
	defaultBackboneIdle      = 3 * time.Second
	defaultUDPMaxFlows       = 262144
	defaultUDPMaxFlowsPerSrc = 1024
	defaultRateBuckets       = 65536
	defaultBGPHoldDown       = 2 * time.Second
	defaultBGPHoldTime       = 9 * time.Second
	defaultBGPKeepalive      = 3 * time.Second
	defaultDrainBGPGrace     = 5 * time.Second
	defaultDrainTimeout      = 60 * time.Second
	defaultFlowLogPath       = "-"
	defaultFlowLogSampleRate = 1.0
	defaultFlowLogQueue      = 65536
	defaultFlowLogMaxFiles   = 5
	defaultSteering          = "anycast"
	defaultDNSListen         = ":53"
	defaultDNSTTL            = 300 * time.Second
	defaultDNSNSTTL          = 3600 * time.Second
	defaultDNSUDPSize        = 1232
	defaultSOASerial         = 1
	defaultSOARefresh        = 3600 * time.Second
	defaultSOARetry          = 900 * time.Second
	defaultSOAExpire         = 604800 * time.Second
	defaultSOAMinimum        = 60 * time.Second
	defaultRRLRate           = 20
	defaultRRLSlip           = 2
	defaultRRLIPv4Prefix     = 24
	defaultRRLIPv6Prefix     = 56
	defaultSteeringTTL       = 30 * time.Second
	defaultKind              = KindStandard
)

// Accelerator kinds.
const (
	// KindStandard spreads flows over weighted, health-checked endpoints.
	KindStandard = "standard"
	// KindCustomRouting maps each listener port to one destination.
	KindCustomRouting = "custom_routing"
)

// WithDefaults returns a deep copy of d with every unset field given its
// documented default. d is not modified; applying it twice changes nothing.
func (d Document) WithDefaults() Document {
	out := d.Clone()
	for ai := range out.Accelerators {
		a := &out.Accelerators[ai]
		setDefault(&a.Steering, defaultSteering)
		setDefault(&a.Kind, defaultKind)
		if out.DNS != nil {
			setDefault(&a.DNSName, DerivedDNSName(a.Name))
		}
		for li := range a.Listeners {
			l := &a.Listeners[li]
			if a.Kind == KindCustomRouting {
				customDefaults(l)
				continue
			}
			if l.ClientAffinity == "" {
				l.ClientAffinity = defaultClientAffinity
			}
			if l.EarlyData == "" && l.Protocol == "tcp" {
				l.EarlyData = defaultEarlyData
			}
			if l.TLS != nil && l.TLS.HandshakeTimeout == 0 {
				l.TLS.HandshakeTimeout = tlsterm.DefaultHandshakeTimeout
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
				// A udp listener's group has no default probe: Validate
				// asks for one (see udpProbe).
				if l.Protocol != "udp" {
					setDefault(&g.HealthCheck.Protocol, defaultHealthProtocol)
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
		setDefault(&p.Backbone.StripeLanes, min(defaultStripeLanes, p.Backbone.Connections))
		setDefault(&p.Backbone.StripeAfterBytes, defaultStripeAfter)
		setDefault(&p.Backbone.StripeMinRTT, defaultStripeMinRTT)
		setDefault(&p.Backbone.FEC, FECAuto)
		setDefault(&p.Backbone.FECMinRTT, defaultFECMinRTT)
		setDefault(&p.Backbone.Retire, FECAuto)
		setDefault(&p.Backbone.KeepAlivePeriod, defaultBackboneKeepAlive)
		setDefault(&p.Backbone.IdleTimeout, defaultBackboneIdle)
		setDefault(&p.UDP.MaxFlows, defaultUDPMaxFlows)
		setDefault(&p.UDP.MaxFlowsPerSource, defaultUDPMaxFlowsPerSrc)
		setDefault(&p.Limits.RateBuckets, defaultRateBuckets)
		setDefault(&p.BGP.HoldDown, defaultBGPHoldDown)
		for ni := range p.BGP.Neighbors {
			n := &p.BGP.Neighbors[ni]
			setDefault(&n.HoldTime, defaultBGPHoldTime)
			setDefault(&n.Keepalive, defaultBGPKeepalive)
		}
		setDefault(&p.Drain.BGPGrace, defaultDrainBGPGrace)
		setDefault(&p.Drain.Timeout, defaultDrainTimeout)
		setDefault(&p.FlowLogs.Path, defaultFlowLogPath)
		setDefault(&p.FlowLogs.SampleRate, defaultFlowLogSampleRate)
		setDefault(&p.FlowLogs.QueueSize, defaultFlowLogQueue)
		setDefault(&p.FlowLogs.MaxFiles, defaultFlowLogMaxFiles)
	}
	for ri := range t.Regions {
		r := &t.Regions[ri]
		setDefault(&r.Admin, defaultRegionAdmin)
		setDefault(&r.Backbone.Address, r.Backbone.Listen)
		setDefault(&r.Backbone.FEC, FECAuto)
	}
	if z := out.DNS; z != nil {
		if len(z.Listen) == 0 {
			z.Listen = []string{defaultDNSListen}
		}
		setDefault(&z.TTL, defaultDNSTTL)
		setDefault(&z.NSTTL, defaultDNSNSTTL)
		setDefault(&z.UDPSize, defaultDNSUDPSize)
		if len(z.Nameservers) > 0 {
			setDefault(&z.SOA.MName, z.Nameservers[0].Name)
		}
		if z.Zone != "" {
			setDefault(&z.SOA.RName, "hostmaster."+strings.TrimSuffix(z.Zone, "."))
		}
		setDefault(&z.SOA.Serial, defaultSOASerial)
		setDefault(&z.SOA.Refresh, defaultSOARefresh)
		setDefault(&z.SOA.Retry, defaultSOARetry)
		setDefault(&z.SOA.Expire, defaultSOAExpire)
		setDefault(&z.SOA.Minimum, defaultSOAMinimum)
		setDefault(&z.RRL.ResponsesPerSecond, defaultRRLRate)
		if z.RRL.Slip == nil {
			z.RRL.Slip = ptr(defaultRRLSlip)
		}
		setDefault(&z.RRL.IPv4PrefixLen, defaultRRLIPv4Prefix)
		setDefault(&z.RRL.IPv6PrefixLen, defaultRRLIPv6Prefix)
		setDefault(&z.Steering.TTL, defaultSteeringTTL)
	}
	return out
}

// DerivedDNSName is the DNS label an accelerator gets when it sets no
// dns_name: its name in lower case, every character other than a letter,
// a digit or '-' replaced by '-', leading and trailing '-' removed, at most
// 63 characters. It may be empty (Validate then asks for dns_name).
func DerivedDNSName(name string) string {
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	s := strings.Trim(string(b), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}

// customDefaults fills the unset fields of a custom routing listener:
// port ranges and health checks as for others; destination ports serve
// TCP and UDP unless they say otherwise. Idle timeouts stay unset (each
// protocol gets its own default when the node compiles the listener).
func customDefaults(l *Listener) {
	for ri := range l.PortRanges {
		setDefault(&l.PortRanges[ri].To, l.PortRanges[ri].From)
	}
	for gi := range l.EndpointGroups {
		g := &l.EndpointGroups[gi]
		for di := range g.DestinationPorts {
			d := &g.DestinationPorts[di]
			setDefault(&d.To, d.From)
			if len(d.Protocols) == 0 {
				d.Protocols = []string{"tcp", "udp"}
			}
		}
		// No health_check, no probes. One with a UDP-only destination
		// port has no default probe: Validate asks for one (udpProbe).
		if g.HealthCheck != (HealthCheck{}) {
			if !g.udpOnlyPorts() {
				setDefault(&g.HealthCheck.Protocol, defaultHealthProtocol)
			}
			g.HealthCheck = g.HealthCheck.withDefaults()
		}
	}
}

// udpOnlyPorts reports whether a custom routing group has a destination
// port range served over UDP alone, on which a TCP probe always fails.
func (g *EndpointGroup) udpOnlyPorts() bool {
	return slices.ContainsFunc(g.DestinationPorts, func(d DestinationPorts) bool {
		return !slices.Contains(d.Protocols, "tcp")
	})
}

// withDefaults fills the unset fields of a health check but its protocol,
// whose default depends on the listener.
func (h HealthCheck) withDefaults() HealthCheck {
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

// Clone returns a copy of d that shares no slice or pointer with it.
func (d Document) Clone() Document {
	out := d
	out.Accelerators = slices.Clone(d.Accelerators)
	for ai := range out.Accelerators {
		a := &out.Accelerators[ai]
		a.IPAddresses = slices.Clone(a.IPAddresses)
		a.Prefixes = slices.Clone(a.Prefixes)
		a.Zones = slices.Clone(a.Zones)
		for zi := range a.Zones {
			a.Zones[zi].IPAddresses = slices.Clone(a.Zones[zi].IPAddresses)
		}
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
				g.DestinationPorts = slices.Clone(g.DestinationPorts)
				for di := range g.DestinationPorts {
					g.DestinationPorts[di].Protocols = slices.Clone(g.DestinationPorts[di].Protocols)
				}
				g.Subnets = slices.Clone(g.Subnets)
				for si := range g.Subnets {
					s := &g.Subnets[si]
					s.Allow = slices.Clone(s.Allow)
					for ri := range s.Allow {
						s.Allow[ri].Addresses = slices.Clone(s.Allow[ri].Addresses)
						s.Allow[ri].Ports = slices.Clone(s.Allow[ri].Ports)
					}
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
	for pi := range out.Topology.PoPs {
		p := &out.Topology.PoPs[pi]
		p.DNSListen = slices.Clone(p.DNSListen)
		p.Zones = slices.Clone(p.Zones)
	}
	out.Topology.Regions = slices.Clone(d.Topology.Regions)
	if d.DNS != nil {
		z := *d.DNS
		z.Listen = slices.Clone(z.Listen)
		z.Nameservers = slices.Clone(z.Nameservers)
		for i := range z.Nameservers {
			z.Nameservers[i].Addresses = slices.Clone(z.Nameservers[i].Addresses)
		}
		z.RRL.Slip = clonePtr(z.RRL.Slip)
		z.Steering.PoPs = slices.Clone(z.Steering.PoPs)
		for i := range z.Steering.PoPs {
			z.Steering.PoPs[i].Addresses = slices.Clone(z.Steering.PoPs[i].Addresses)
		}
		z.Steering.Clients = slices.Clone(z.Steering.Clients)
		for i := range z.Steering.Clients {
			z.Steering.Clients[i].PoPs = slices.Clone(z.Steering.Clients[i].PoPs)
		}
		z.Steering.CatchAll = slices.Clone(z.Steering.CatchAll)
		out.DNS = &z
	}
	return out
}
