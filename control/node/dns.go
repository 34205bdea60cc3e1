package node

import (
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/control/config"
	dnsedge "github.com/anyedge/anyedge/edge/dns"
)

// steeringAddrs returns the unicast addresses the PoP called pop serves
// DNS-steered accelerators on (none when it serves none).
func steeringAddrs(doc *config.Document, pop string) ([]netip.Addr, error) {
	if doc.DNS == nil {
		return nil, nil
	}
	for i, p := range doc.DNS.Steering.PoPs {
		if p.Name == pop {
			return parseAddrs(fmt.Sprintf("dns.steering.pops[%d].addresses", i), p.Addresses)
		}
	}
	return nil, nil
}

func parseAddrs(path string, ss []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range ss {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// dnsZoneConfig compiles the document's dns section into the zone every
// edge serves.
func dnsZoneConfig(doc *config.Document) (dnsedge.ZoneConfig, error) {
	d := doc.DNS
	zc := dnsedge.ZoneConfig{
		Origin: d.Zone, TTL: d.TTL, NSTTL: d.NSTTL,
		SOA: dnsedge.SOA{MName: d.SOA.MName, RName: d.SOA.RName, Serial: d.SOA.Serial,
			Refresh: d.SOA.Refresh, Retry: d.SOA.Retry, Expire: d.SOA.Expire, Minimum: d.SOA.Minimum},
		Steering: dnsedge.Steering{TTL: d.Steering.TTL, CatchAll: d.Steering.CatchAll},
	}
	for i, ns := range d.Nameservers {
		addrs, err := parseAddrs(fmt.Sprintf("dns.nameservers[%d].addresses", i), ns.Addresses)
		if err != nil {
			return zc, err
		}
		zc.Nameservers = append(zc.Nameservers, dnsedge.Nameserver{Name: ns.Name, Addrs: addrs})
	}
	for i, a := range doc.Accelerators {
		addrs, err := parseAddrs(fmt.Sprintf("accelerators[%d].ip_addresses", i), a.IPAddresses)
		if err != nil {
			return zc, err
		}
		zc.Names = append(zc.Names, dnsedge.Name{Name: a.DNSName, Accelerator: a.Name, Addrs: addrs, Steered: a.Steering == "dns"})
	}
	for i, p := range d.Steering.PoPs {
		addrs, err := parseAddrs(fmt.Sprintf("dns.steering.pops[%d].addresses", i), p.Addresses)
		if err != nil {
			return zc, err
		}
		zc.Steering.PoPs = append(zc.Steering.PoPs, dnsedge.PoP{Name: p.Name, Addrs: addrs})
	}
	for i, c := range d.Steering.Clients {
		pfx, err := netip.ParsePrefix(c.Prefix)
		if err != nil {
			return zc, fmt.Errorf("dns.steering.clients[%d].prefix: %w", i, err)
		}
		zc.Steering.Clients = append(zc.Steering.Clients, dnsedge.ClientRule{Prefix: pfx, PoPs: c.PoPs})
	}
	return zc, nil
}

// edgeDNS is an edge's DNS server and what the supervisor feeds it: which
// PoPs are available for each steered accelerator.
type edgeDNS struct {
	srv     *dnsedge.Server
	zone    string
	listen  []string
	steered []string // accelerators with steering "dns"
	pops    []string // the steering PoPs, in configuration order

	// avail and view are owned by the supervisor goroutine; status reads
	// the published copy.
	avail     dnsedge.Availability
	published atomic.Pointer[dnsView]
}

// dnsView is what /status shows of the zone and the steering inputs.
type dnsView struct {
	zone      string
	steered   []string
	fleetView bool
	avail     dnsedge.Availability
}

// setZone puts the zone of a reloaded document in force; the next update
// publishes it with the availability. The supervisor calls it.
func (d *edgeDNS) setZone(doc *config.Document, zone *dnsedge.Zone) {
	d.zone, d.steered, d.pops = zone.Origin(), zone.Steered(), nil
	for _, p := range doc.DNS.Steering.PoPs {
		d.pops = append(d.pops, p.Name)
	}
	d.srv.SetZone(zone)
	d.avail = nil
}

// newEdgeDNS builds the DNS server of the PoP n, or returns nil when the
// document has no dns section.
func newEdgeDNS(doc *config.Document, n config.Node, zone *dnsedge.Zone, reg prometheus.Registerer, log *slog.Logger) (*edgeDNS, error) {
	if doc.DNS == nil {
		return nil, nil
	}
	var err error
	d := &edgeDNS{zone: zone.Origin(), listen: doc.DNS.Listen, steered: zone.Steered()}
	if len(n.PoP.DNSListen) > 0 {
		d.listen = n.PoP.DNSListen
	}
	for _, p := range doc.DNS.Steering.PoPs {
		d.pops = append(d.pops, p.Name)
	}
	rrl := doc.DNS.RRL
	slip := 0
	if rrl.Slip != nil {
		slip = *rrl.Slip
	}
	d.srv, err = dnsedge.New(dnsedge.Config{
		Listen: d.listen, UDPSize: doc.DNS.UDPSize,
		RRL: dnsedge.RRLConfig{ResponsesPerSecond: rrl.ResponsesPerSecond, Slip: slip,
			IPv4PrefixLen: rrl.IPv4PrefixLen, IPv6PrefixLen: rrl.IPv6PrefixLen},
		Logger: log, Registerer: reg,
	}, zone)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// update recomputes, from this edge's own state and the fleet the regions
// relay, which PoPs may take new clients of each steered accelerator: a
// PoP whose state says it is ready for the accelerator and not draining.
// This edge trusts its own state over any relay of it. Without any relay
// (no region reachable, or only regions of control protocol 1) the other
// PoPs count as available: the answers then follow the configured order,
// minus this edge when it cannot serve.
func (d *edgeDNS) update(self string, own wire.EdgeState, fleet map[string]wire.EdgeState, view bool) {
	avail := dnsedge.Availability{}
	for _, acc := range d.steered {
		pops := []string{}
		for _, p := range d.pops {
			st, known := fleet[p]
			switch {
			case p == self:
				st, known = own, true
			case !view:
				pops = append(pops, p)
				continue
			}
			if known && !st.Draining && slices.Contains(st.Ready, acc) {
				pops = append(pops, p)
			}
		}
		avail[acc] = pops
	}
	if v := d.published.Load(); v != nil && v.fleetView == view && d.avail != nil && reflect.DeepEqual(avail, d.avail) {
		return
	}
	if d.avail == nil || !reflect.DeepEqual(avail, d.avail) {
		d.srv.SetAvailability(avail)
	}
	d.avail = avail
	d.published.Store(&dnsView{zone: d.zone, steered: d.steered, fleetView: view, avail: avail})
}

// DNSStatus is the edge's DNS server in /status.
type DNSStatus struct {
	Zone   string   `json:"zone"`
	Listen []string `json:"listen"`
	// FleetView is set when some region relays the edges' states.
	FleetView bool `json:"fleet_view"`
	// Steering lists, per DNS-steered accelerator, the PoPs its answers
	// may name now.
	Steering []SteeringState `json:"steering,omitempty"`
	dnsedge.Stats
}

// SteeringState is one steered accelerator's available PoPs.
type SteeringState struct {
	Accelerator string   `json:"accelerator"`
	Available   []string `json:"available"`
}

func (d *edgeDNS) status() *DNSStatus {
	st := &DNSStatus{Stats: d.srv.Stats()}
	for _, a := range d.srv.Addrs() {
		st.Listen = append(st.Listen, a.String())
	}
	if v := d.published.Load(); v != nil {
		st.Zone, st.FleetView = v.zone, v.fleetView
		for _, acc := range v.steered {
			st.Steering = append(st.Steering, SteeringState{Accelerator: acc, Available: v.avail[acc]})
		}
	}
	return st
}
