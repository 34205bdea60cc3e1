package config

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/edge/tlsterm"
	"github.com/anyedge/anyedge/healthcheck/probe"
)

// idPattern is the shape of endpoint IDs.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate checks a document (normally after WithDefaults) and returns a
// *ValidationError listing every problem with its path, or nil. The
// problems have no line and column: Parse adds them.
func (d *Document) Validate() error {
	var ps problems
	d.validate(&ps)
	return ps.err()
}

// validate reports every problem of d into ps.
func (d *Document) validate(ps *problems) {
	v := validator{
		probs:       ps,
		regions:     make(map[string]bool),
		endpointIDs: make(map[string]string),
		addrOwner:   make(map[netip.Addr]string),
		zoneNames:   make(map[string]bool),
	}
	for _, r := range d.Topology.Regions {
		if r.Name != "" {
			v.regions[r.Name] = true
		}
		v.regionNames = append(v.regionNames, r.Name)
	}
	if len(d.Accelerators) == 0 {
		v.add("accelerators", "at least one accelerator is required")
	}
	names := make(map[string]string)
	for i := range d.Accelerators {
		p := fmt.Sprintf("accelerators[%d]", i)
		a := &d.Accelerators[i]
		switch first, dup := names[a.Name]; {
		case a.Name == "":
			v.add(p+".name", "required")
		case dup:
			v.add(p+".name", "duplicate name %q (first at %s)", a.Name, first)
		default:
			names[a.Name] = p + ".name"
		}
		v.accelerator(p, a)
	}
	v.topology("topology", &d.Topology)
	v.dns(d)
}

// validator carries the cross-references of one Validate call.
type validator struct {
	probs       *problems
	regions     map[string]bool
	regionNames []string
	endpointIDs map[string]string     // id → path of first use
	addrOwner   map[netip.Addr]string // anycast address → accelerator path
	zoneNames   map[string]bool       // zones of every accelerator
}

func (v *validator) add(path, format string, args ...any) { v.probs.add(path, format, args...) }

func (v *validator) accelerator(p string, a *Accelerator) {
	var addrs []netip.Addr
	// Every anycast accelerator needs addresses, so a PoP that announces
	// over BGP always has something to announce for it (prefixes or host
	// routes). A DNS-steered one is reached at the PoPs' own addresses.
	switch {
	case a.Steering == "dns" && len(a.IPAddresses) > 0:
		v.add(p+".ip_addresses", `must be empty with steering "dns": clients reach the PoPs' dns.steering.pops addresses`)
	case a.Steering == "dns" && len(a.Prefixes) > 0:
		v.add(p+".prefixes", `must be empty with steering "dns": nothing is announced over BGP`)
	case a.Steering != "dns" && len(a.IPAddresses) == 0:
		v.add(p+".ip_addresses", "at least one address is required")
	}
	seen := make(map[netip.Addr]bool)
	for i, s := range a.IPAddresses {
		ip := fmt.Sprintf("%s.ip_addresses[%d]", p, i)
		addr, err := netip.ParseAddr(s)
		switch {
		case err != nil || addr.Zone() != "":
			v.add(ip, "%q is not an IP address", s)
			continue
		case addr.Is4In6():
			v.add(ip, "%s is an IPv4-mapped address; write it as %s", s, addr.Unmap())
			continue
		case addr.IsUnspecified() || addr.IsMulticast(): // loopback is fine: anyedge dev and labs use it
			v.add(ip, "%s cannot be an anycast address", s)
			continue
		case seen[addr]:
			v.add(ip, "duplicate address %s", s)
			continue
		}
		seen[addr] = true
		if other, ok := v.addrOwner[addr]; ok {
			v.add(ip, "address %s is also used by %s", s, other)
		} else {
			v.addrOwner[addr] = p
		}
		addrs = append(addrs, addr)
	}

	var prefixes []netip.Prefix
	prefixAt := make(map[netip.Prefix]string) // prefix → its path
	for i, s := range a.Prefixes {
		pp := fmt.Sprintf("%s.prefixes[%d]", p, i)
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			v.add(pp, "%q is not a CIDR prefix", s)
			continue
		}
		if pfx != pfx.Masked() {
			v.add(pp, "%s has host bits set (did you mean %s?)", s, pfx.Masked())
			continue
		}
		if _, dup := prefixAt[pfx]; !dup {
			prefixAt[pfx] = pp
		}
		prefixes = append(prefixes, pfx)
	}
	if len(a.Prefixes) > 0 {
		// Which prefixes cover which addresses, in time linear in their
		// numbers: an address is covered by a prefix of its own masked to
		// one of the lengths the prefixes have.
		var lengths []int
		for pfx := range prefixAt {
			if !slices.Contains(lengths, pfx.Bits()) {
				lengths = append(lengths, pfx.Bits())
			}
		}
		covering := make(map[netip.Prefix]bool)
		for i, s := range a.IPAddresses {
			addr, err := netip.ParseAddr(s)
			if err != nil {
				continue
			}
			covered := false
			for _, bits := range lengths {
				if pfx, err := addr.Prefix(bits); err == nil {
					if _, ok := prefixAt[pfx]; ok {
						covered, covering[pfx] = true, true
					}
				}
			}
			if !covered {
				v.add(fmt.Sprintf("%s.ip_addresses[%d]", p, i), "%s is not covered by any of prefixes", s)
			}
		}
		for i, pfx := range prefixes {
			if !covering[pfx] && len(addrs) > 0 {
				v.add(prefixAt[pfx], "%s covers none of the accelerator's ip_addresses", a.Prefixes[i])
			}
		}
	}

	v.zones(p, a, prefixes)
	if len(a.Listeners) == 0 {
		v.add(p+".listeners", "at least one listener is required")
	}
	switch a.Kind {
	case KindStandard:
	case KindCustomRouting:
		if a.Steering == "dns" {
			v.add(p+".steering", `must be "anycast" for a custom_routing accelerator: a matchmaker hands out its static addresses`)
		}
	default:
		v.add(p+".kind", `must be %q or %q, got %q`, KindStandard, KindCustomRouting, a.Kind)
	}
	for i := range a.Listeners {
		lp := fmt.Sprintf("%s.listeners[%d]", p, i)
		if a.Kind == KindCustomRouting {
			v.customListener(lp, &a.Listeners[i])
			continue
		}
		v.listener(lp, &a.Listeners[i])
	}
	v.overlaps(p, a.Listeners)
}

// validRange reports whether r is a usable port range.
func validRange(r PortRange) bool {
	return r.From >= 1 && r.From <= 65535 && r.To >= 1 && r.To <= 65535 && r.From <= r.To
}

// portSet answers whether a port is in one of a list of ranges, in time
// logarithmic in their number.
type portSet struct {
	from  []int // the ranges' starts, sorted
	reach []int // reach[k]: the furthest end of the ranges from[0..k]
}

func newPortSet(ranges []PortRange) portSet {
	sorted := slices.SortedFunc(slices.Values(ranges), func(a, b PortRange) int { return a.From - b.From })
	var s portSet
	for k, r := range sorted {
		s.from = append(s.from, r.From)
		s.reach = append(s.reach, r.To)
		if k > 0 {
			s.reach[k] = max(s.reach[k], s.reach[k-1])
		}
	}
	return s
}

// has reports whether port is in one of the ranges: some range starting
// at or below it reaches it.
func (s portSet) has(port int) bool {
	n, _ := slices.BinarySearch(s.from, port+1) // ranges starting at or below port
	return n > 0 && s.reach[n-1] >= port
}

// overlaps reports ports used twice by listeners of one protocol, and ranges
// of one listener that overlap each other. It sweeps the ranges of each
// protocol in port order, so its time is that of a sort; each range is
// reported with one range it overlaps (the one reaching furthest), at the
// range of the two that comes later in the document.
func (v *validator) overlaps(p string, ls []Listener) {
	type span struct {
		PortRange
		listener, index int // document order
	}
	byProto := make(map[string][]span)
	var protos []string
	for i := range ls {
		if _, ok := byProto[ls[i].Protocol]; !ok {
			protos = append(protos, ls[i].Protocol)
		}
		for ri, r := range ls[i].PortRanges {
			if validRange(r) {
				byProto[ls[i].Protocol] = append(byProto[ls[i].Protocol], span{r, i, ri})
			}
		}
	}
	for _, proto := range protos {
		spans := byProto[proto]
		slices.SortStableFunc(spans, func(a, b span) int { return a.From - b.From })
		var reach *span // the range seen so far that ends last
		for k := range spans {
			cur := &spans[k]
			if reach != nil && cur.From <= reach.To {
				first, later := reach, cur
				if later.listener < first.listener || (later.listener == first.listener && later.index < first.index) {
					first, later = later, first
				}
				here := fmt.Sprintf("%s.listeners[%d].port_ranges[%d]", p, later.listener, later.index)
				port := max(first.From, later.From)
				if first.listener == later.listener {
					v.add(here, "port %d is also in port_ranges[%d] of the same listener", port, first.index)
				} else {
					name := proto
					if name == "" {
						name = "custom routing"
					}
					v.add(here, "%s port %d is also used by %s.listeners[%d].port_ranges[%d]",
						name, port, p, first.listener, first.index)
				}
			}
			if reach == nil || cur.To > reach.To {
				reach = cur
			}
		}
	}
}

func (v *validator) listener(p string, l *Listener) {
	switch l.Protocol {
	case "tcp", "udp":
	case "":
		v.add(p+".protocol", `required ("tcp" or "udp")`)
	default:
		v.add(p+".protocol", `must be "tcp" or "udp", got %q`, l.Protocol)
	}
	v.portRanges(p+".port_ranges", l.PortRanges)
	switch l.ClientAffinity {
	case "none", "source_ip":
	default:
		v.add(p+".client_affinity", `must be "none" or "source_ip", got %q`, l.ClientAffinity)
	}
	switch {
	case l.Protocol == "udp" && l.EarlyData != "":
		v.add(p+".early_data", "applies to tcp listeners only")
	case l.Protocol != "tcp":
	case l.EarlyData == "off", l.EarlyData == "tls", l.EarlyData == "always":
	default:
		v.add(p+".early_data", `must be "off", "tls" or "always", got %q`, l.EarlyData)
	}
	if l.TLS != nil {
		v.listenerTLS(p+".tls", l)
	}
	if l.IdleTimeout < time.Second && (l.Protocol == "tcp" || l.Protocol == "udp") {
		v.add(p+".idle_timeout", "%s is below 1s", l.IdleTimeout)
	}
	if len(l.EndpointGroups) == 0 {
		v.add(p+".endpoint_groups", "at least one endpoint group is required")
	}
	v.clients(p, l)
	groupRegion := make(map[string]string)
	for i := range l.EndpointGroups {
		gp := fmt.Sprintf("%s.endpoint_groups[%d]", p, i)
		g := &l.EndpointGroups[i]
		v.groupRegion(gp, g, groupRegion)
		if len(g.DestinationPorts) > 0 {
			v.add(gp+".destination_ports", "only for custom_routing accelerators")
		}
		if len(g.Subnets) > 0 {
			v.add(gp+".subnets", "only for custom_routing accelerators")
		}
		v.group(gp, g, l)
	}
}

// groupRegion checks a group's region: required, known, one group per
// region in a listener (seen maps regions to the path of their group).
func (v *validator) groupRegion(gp string, g *EndpointGroup, seen map[string]string) {
	switch first, dup := seen[g.Region]; {
	case g.Region == "":
		v.add(gp+".region", "required")
	case !v.regions[g.Region]:
		v.add(gp+".region", "%q is not a region of topology.regions (regions: %s)", g.Region, list(v.regionNames))
	case dup:
		v.add(gp+".region", "%q already has a group in this listener at %s", g.Region, first)
	default:
		seen[g.Region] = gp
	}
}

// portRanges checks a listener's port ranges (at least one).
func (v *validator) portRanges(p string, rs []PortRange) {
	if len(rs) == 0 {
		v.add(p, "at least one port range is required")
	}
	for i, r := range rs {
		rp := fmt.Sprintf("%s[%d]", p, i)
		okFrom := v.port(rp+".from", r.From)
		// A "to" equal to "from" is most often the default: one
		// problem is enough.
		okTo := r.To == r.From || v.port(rp+".to", r.To)
		if okFrom && okTo && r.From > r.To {
			v.add(rp, "from %d is above to %d", r.From, r.To)
		}
	}
}

// port checks a port that must be 1–65535.
func (v *validator) port(path string, n int) bool {
	if n < 1 || n > 65535 {
		v.add(path, "%d is outside 1–65535", n)
		return false
	}
	return true
}

func (v *validator) group(p string, g *EndpointGroup, l *Listener) {
	if g.TrafficDial != nil && (*g.TrafficDial < 0 || *g.TrafficDial > 100) {
		v.add(p+".traffic_dial", "%d is outside 0–100", *g.TrafficDial)
	}
	if g.Preference < 0 {
		v.add(p+".preference", "%d is negative", g.Preference)
	}
	if l.Protocol == "udp" {
		v.udpProbe(p+".health_check.protocol", &g.HealthCheck, "a udp listener's group")
	}
	v.healthCheck(p+".health_check", &g.HealthCheck)

	overridden := make(map[int]string)
	// With a broken port range (reported at the range) the listener's
	// ports are unknown.
	rangesOK := !slices.ContainsFunc(l.PortRanges, func(r PortRange) bool { return !validRange(r) })
	var ports portSet
	if len(g.PortOverrides) > 0 && rangesOK {
		ports = newPortSet(l.PortRanges)
	}
	for i, o := range g.PortOverrides {
		op := fmt.Sprintf("%s.port_overrides[%d]", p, i)
		if rangesOK && !ports.has(o.ListenerPort) {
			v.add(op+".listener_port", "%d is not in any of the listener's port ranges", o.ListenerPort)
		}
		if first, dup := overridden[o.ListenerPort]; dup {
			v.add(op+".listener_port", "%d is already overridden at %s", o.ListenerPort, first)
		} else {
			overridden[o.ListenerPort] = op
		}
		v.port(op+".endpoint_port", o.EndpointPort)
	}

	for i := range g.Endpoints {
		ep := fmt.Sprintf("%s.endpoints[%d]", p, i)
		e := &g.Endpoints[i]
		v.endpointID(ep, e.ID)
		if msg := checkEndpointAddress(e.Address); msg != "" {
			v.add(ep+".address", "%s", msg)
		}
		if e.Weight != nil && (*e.Weight < 0 || *e.Weight > 255) {
			v.add(ep+".weight", "%d is outside 0–255", *e.Weight)
		}
	}
}

// endpointID checks the ID of the endpoint or subnet at path: its shape,
// and that no other endpoint or subnet of the fleet has it.
func (v *validator) endpointID(path, id string) {
	switch first, dup := v.endpointIDs[id]; {
	case id == "":
		v.add(path+".id", "required")
	case !idPattern.MatchString(id):
		v.add(path+".id", "%q must be 1–63 letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	case dup:
		v.add(path+".id", "duplicate id %q (first at %s)", id, first)
	default:
		v.endpointIDs[id] = path
	}
}

// checkEndpointAddress accepts "host" or "host:port", host being an IP
// address or a DNS name; it returns what is wrong or "".
func checkEndpointAddress(s string) string {
	if s == "" {
		return "required"
	}
	if addr, err := netip.ParseAddr(s); err == nil {
		if addr.IsUnspecified() || addr.IsMulticast() {
			return fmt.Sprintf("%s cannot be dialled", s)
		}
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(s, ":") {
			return fmt.Sprintf("%q is not host or host:port", s)
		}
		host = s
	} else {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("port %q in %q is outside 1–65535", port, s)
		}
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if addr.IsUnspecified() || addr.IsMulticast() {
			return fmt.Sprintf("%s cannot be dialled", host)
		}
		return ""
	}
	if !isHostname(host) {
		return fmt.Sprintf("%q is neither an IP address nor a DNS name", host)
	}
	return ""
}

// isHostname reports whether s is a DNS name made of letters, digits and
// hyphens, with an optional trailing dot.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// udpProbe asks a group of UDP endpoints (whose) for an explicit probe.
// No probe can tell a healthy UDP service from a silent one without
// speaking its protocol, and a TCP probe (the default of other groups) of
// a UDP-only endpoint always fails: the group would be marked unhealthy
// and served only through fail-open, with nothing said.
func (v *validator) udpProbe(p string, h *HealthCheck, whose string) {
	if h.Protocol == "" {
		v.add(p, "required for %s (a tcp probe of a UDP-only endpoint always fails): "+
			"dns if the endpoints answer DNS, else tcp, http or https on a port they serve over TCP (health_check.port)", whose)
	}
}

func (v *validator) healthCheck(p string, h *HealthCheck) {
	// The probe's own rules (healthcheck/probe), then the checker's.
	check := func(field string, err error) {
		if err != nil {
			v.add(p+"."+field, "%v", err)
		}
	}
	if h.Protocol != "" { // udpProbe reports a missing one
		check("protocol", probe.CheckProtocol(h.Protocol))
	}
	if h.Port < 0 || h.Port > 65535 {
		v.add(p+".port", "%d is outside 0–65535", h.Port)
	}
	check("path", probe.CheckPath(h.Path))
	_, _, err := probe.ParseStatusRange(h.StatusCodes)
	check("status_codes", err)
	check("dns_name", probe.CheckDNSName(h.DNSName))
	_, err = probe.ParseDNSType(h.DNSType)
	check("dns_type", err)
	_, err = probe.ParseRcode(h.DNSRcode)
	check("dns_rcode", err)
	if h.Interval < time.Second {
		v.add(p+".interval", "%s is below 1s", h.Interval)
	}
	switch {
	case h.Timeout <= 0:
		v.add(p+".timeout", "%s must be positive", h.Timeout)
	case h.Timeout > h.Interval:
		v.add(p+".timeout", "%s is above interval %s", h.Timeout, h.Interval)
	}
	if h.HealthyThreshold < 1 || h.HealthyThreshold > 10 {
		v.add(p+".healthy_threshold", "%d is outside 1–10", h.HealthyThreshold)
	}
	if h.UnhealthyThreshold < 1 || h.UnhealthyThreshold > 10 {
		v.add(p+".unhealthy_threshold", "%d is outside 1–10", h.UnhealthyThreshold)
	}
}

func (v *validator) topology(p string, t *Topology) {
	if len(t.PoPs) == 0 && len(t.Regions) == 0 {
		v.add(p, "at least one pop or region is required")
	}
	if t.PKIDir == "" {
		v.add(p+".pki_dir", "required")
	}
	nodes := make(map[string]string)
	node := func(np, name string) {
		switch first, dup := nodes[name]; {
		case name == "":
			v.add(np, "required")
		case pki.ValidNodeName(name) != nil:
			// The name is in the node's certificate and names its
			// files: backbone/pki's rule.
			v.add(np, "%v", pki.ValidNodeName(name))
		case dup:
			v.add(np, "duplicate node name %q (first at %s)", name, first)
		default:
			nodes[name] = np
		}
	}
	for i := range t.PoPs {
		pp := fmt.Sprintf("%s.pops[%d]", p, i)
		node(pp+".name", t.PoPs[i].Name)
		v.pop(pp, &t.PoPs[i])
	}
	for i := range t.Regions {
		rp := fmt.Sprintf("%s.regions[%d]", p, i)
		r := &t.Regions[i]
		node(rp+".name", r.Name)
		v.admin(rp+".admin", r.Admin)
		v.remoteAdmin(rp+".remote_admin", r.RemoteAdmin, r.Admin)
		v.regionLimits(rp+".limits", r.Limits)
		v.autoOrOff(rp+".backbone.fec", r.Backbone.FEC)
		if r.Backbone.Listen == "" {
			v.add(rp+".backbone.listen", "required (host:port)")
			continue
		}
		if msg := checkHostPort(r.Backbone.Listen, false); msg != "" {
			v.add(rp+".backbone.listen", "%s", msg)
			continue
		}
		if msg := checkHostPort(r.Backbone.Address, true); msg != "" {
			if r.Backbone.Address == r.Backbone.Listen {
				msg = fmt.Sprintf("required: edges cannot dial listen address %q", r.Backbone.Listen)
			}
			v.add(rp+".backbone.address", "%s", msg)
		}
	}
}

// checkHostPort checks "host:port" and returns what is wrong or "". A listen
// address may have an empty host and port 0; a dial address needs both.
func checkHostPort(s string, dial bool) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%q is not host:port", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (dial && n == 0) {
		return fmt.Sprintf("port %q in %q is not a valid port", port, s)
	}
	if host == "" {
		if dial {
			return fmt.Sprintf("%q has no host", s)
		}
		return ""
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if dial && addr.IsUnspecified() {
			return fmt.Sprintf("%q has an unspecified host", s)
		}
		return ""
	}
	if !isHostname(host) {
		return fmt.Sprintf("host %q in %q is not an IP address or DNS name", host, s)
	}
	return ""
}

// admin checks that an admin API address is host:port on loopback.
func (v *validator) admin(p, s string) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.add(p, "%q is not host:port", s)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(p, "port %q in %q is not a valid port", port, s)
	}
	if host == "localhost" {
		return
	}
	if addr, err := netip.ParseAddr(host); err != nil || !addr.IsLoopback() {
		v.add(p, "%q must be on a loopback address (127.0.0.0/8 or ::1)", s)
	}
}

// remoteAdmin checks an optional remote admin address: a listen host:port
// other than the loopback one.
func (v *validator) remoteAdmin(p, s, local string) {
	if s == "" {
		return
	}
	if msg := checkHostPort(s, false); msg != "" {
		v.add(p, "%s", msg)
		return
	}
	if s == local {
		v.add(p, "%q is also the loopback admin address; the remote one needs its own port", s)
	}
}

func (v *validator) pop(p string, pop *PoP) {
	v.admin(p+".admin", pop.Admin)
	v.remoteAdmin(p+".remote_admin", pop.RemoteAdmin, pop.Admin)
	b := pop.Backbone
	if b.Connections < 1 || b.Connections > 16 {
		v.add(p+".backbone.connections", "%d is outside 1–16", b.Connections)
	}
	if b.StripeLanes < 1 || b.StripeLanes > b.Connections {
		v.add(p+".backbone.stripe_lanes", "%d is outside 1–connections (%d)", b.StripeLanes, b.Connections)
	}
	if b.StripeAfterBytes < 0 {
		v.add(p+".backbone.stripe_after_bytes", "%d is negative", b.StripeAfterBytes)
	}
	if b.StripeMinRTT < 0 {
		v.add(p+".backbone.stripe_min_rtt", "%s is negative", b.StripeMinRTT)
	}
	v.autoOrOff(p+".backbone.fec", b.FEC)
	v.autoOrOff(p+".backbone.retire", b.Retire)
	if b.FECMinRTT < 0 {
		v.add(p+".backbone.fec_min_rtt", "%s is negative", b.FECMinRTT)
	}
	switch {
	case b.KeepAlivePeriod <= 0:
		v.add(p+".backbone.keepalive_period", "%s must be positive", b.KeepAlivePeriod)
	case b.KeepAlivePeriod >= b.IdleTimeout:
		v.add(p+".backbone.keepalive_period", "%s is not below idle_timeout %s", b.KeepAlivePeriod, b.IdleTimeout)
	}
	if b.IdleTimeout <= 0 {
		v.add(p+".backbone.idle_timeout", "%s must be positive", b.IdleTimeout)
	}
	u := pop.UDP
	if u.MaxFlows <= 0 {
		v.add(p+".udp.max_flows", "%d must be positive", u.MaxFlows)
	}
	switch {
	case u.MaxFlowsPerSource <= 0:
		v.add(p+".udp.max_flows_per_source", "%d must be positive", u.MaxFlowsPerSource)
	case u.MaxFlows > 0 && u.MaxFlowsPerSource > u.MaxFlows:
		v.add(p+".udp.max_flows_per_source", "%d is above max_flows %d", u.MaxFlowsPerSource, u.MaxFlows)
	}
	v.popLimits(p+".limits", pop.Limits)
	if len(pop.BGP.Neighbors) > 0 {
		v.bgp(p+".bgp", &pop.BGP)
	}
	if pop.Drain.BGPGrace < 0 {
		v.add(p+".drain.bgp_grace", "%s is negative", pop.Drain.BGPGrace)
	}
	if pop.Drain.Timeout < 0 {
		v.add(p+".drain.timeout", "%s is negative", pop.Drain.Timeout)
	}
	for i, l := range pop.DNSListen {
		if msg := checkHostPort(l, false); msg != "" {
			v.add(fmt.Sprintf("%s.dns_listen[%d]", p, i), "%s", msg)
		}
	}
	v.flowLogs(p+".flow_logs", &pop.FlowLogs)
	v.popZones(p, pop)
}

func (v *validator) flowLogs(p string, f *FlowLogs) {
	if f.SampleRate <= 0 || f.SampleRate > 1 {
		v.add(p+".sample_rate", "%v is outside (0, 1]", f.SampleRate)
	}
	if f.QueueSize < 1 || f.QueueSize > 1<<24 {
		v.add(p+".queue_size", "%d is outside 1–16777216", f.QueueSize)
	}
	if f.MaxSizeMB < 0 {
		v.add(p+".max_size_mb", "%d is negative", f.MaxSizeMB)
	}
	if f.MaxFiles < 1 || f.MaxFiles > 1000 {
		v.add(p+".max_files", "%d is outside 1–1000", f.MaxFiles)
	}
	if f.Path == "-" && f.MaxSizeMB > 0 {
		v.add(p+".max_size_mb", "standard output (path \"-\") cannot be rotated")
	}
}

// list joins names for messages; an empty list reads "none".
func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// listenerTLS checks what the edge needs to terminate TLS for a listener;
// the files themselves are read (and refused when expired, mismatched or
// readable by every user) when the edge starts.
func (v *validator) listenerTLS(p string, l *Listener) {
	t := l.TLS
	if l.Protocol != "tcp" {
		v.add(p, "applies to tcp listeners only")
		return
	}
	if len(t.Certificates) == 0 {
		v.add(p+".certificates", "at least one certificate is required")
	}
	for i, c := range t.Certificates {
		cp := fmt.Sprintf("%s.certificates[%d]", p, i)
		if c.CertFile == "" {
			v.add(cp+".cert_file", "required")
		}
		if c.KeyFile == "" {
			v.add(cp+".key_file", "required")
		}
	}
	if err := tlsterm.CheckALPN(t.ALPN); err != nil {
		v.add(p+".alpn", "%v", err)
	}
	if t.HandshakeTimeout < 100*time.Millisecond || t.HandshakeTimeout > 5*time.Minute {
		v.add(p+".handshake_timeout", "%s is outside 100ms to 5m", t.HandshakeTimeout)
	}
	if t.Reencrypt != nil && t.Reencrypt.CAFile == "" {
		v.add(p+".reencrypt.ca_file", "required")
	}
}

// autoOrOff checks a backbone's fec or retire key.
func (v *validator) autoOrOff(p, mode string) {
	if mode != FECAuto && mode != FECOff {
		v.add(p, "%q is neither %q nor %q", mode, FECAuto, FECOff)
	}
}
