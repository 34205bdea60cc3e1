package node

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/portmap"
	"github.com/anyedge/anyedge/control/admin"
)

// PortMapAnswer is the answer of GET /port-map: the mappings a lookup
// found (by destination or listener port, or every mapping with expand),
// or the subnets' blocks.
type PortMapAnswer struct {
	Mappings []PortMapping `json:"mappings,omitempty"`
	Subnets  []SubnetBlock `json:"subnets,omitempty"`
}

// PortMapping is one listener port and the destination it reaches.
type PortMapping struct {
	Accelerator string `json:"accelerator"`
	// Addresses are the accelerator's static addresses: a client connects
	// to one of them on ListenerPort.
	Addresses    []string       `json:"addresses"`
	ListenerPort uint16         `json:"listener_port"`
	Destination  netip.AddrPort `json:"destination"`
	Protocols    []string       `json:"protocols"`
	Subnet       string         `json:"subnet"`
	Region       string         `json:"region"`
	// Allowed is the node's view of whether traffic may reach the
	// destination (the region's is authoritative); absent when the node
	// does not know yet.
	Allowed *bool `json:"allowed,omitempty"`
}

// SubnetBlock is one subnet's block of listener ports.
type SubnetBlock struct {
	Accelerator      string           `json:"accelerator"`
	Listener         string           `json:"listener"`
	Subnet           string           `json:"subnet"`
	Region           string           `json:"region"`
	CIDR             netip.Prefix     `json:"cidr"`
	FirstPort        uint16           `json:"first_port"`
	LastPort         uint16           `json:"last_port"`
	DestinationPorts []DestPortsRange `json:"destination_ports"`
}

// DestPortsRange is a range of destination ports and their protocols.
type DestPortsRange struct {
	From      uint16   `json:"from"`
	To        uint16   `json:"to"`
	Protocols []string `json:"protocols"`
}

// OverrideState is one run-time allow or deny.
type OverrideState struct {
	Subnet  string     `json:"subnet"`
	Address netip.Addr `json:"address,omitzero"`
	Port    uint16     `json:"port,omitempty"`
	Allow   bool       `json:"allow"`
}

// DownState is a destination refused without a dial.
type DownState struct {
	Subnet      string         `json:"subnet"`
	Destination netip.AddrPort `json:"destination"`
	Since       *time.Time     `json:"since,omitempty"`
	// Until is when a failed dial's refusal ends; absent while a probe
	// fails.
	Until  *time.Time `json:"until,omitempty"`
	Reason string     `json:"reason,omitempty"`
	Probe  bool       `json:"probe,omitempty"`
}

// RegionCustomStatus is a region's custom routing: its subnets, the
// run-time overrides in force and the destinations it refuses.
type RegionCustomStatus struct {
	Subnets   []SubnetBlock   `json:"subnets"`
	Overrides []OverrideState `json:"overrides"`
	Down      []DownState     `json:"down"`
	// Probed counts the destinations being probed.
	Probed int `json:"probed"`
}

// EdgeCustomStatus is an edge's custom routing: every subnet's block and,
// per region, the state the region pushed.
type EdgeCustomStatus struct {
	Subnets []SubnetBlock      `json:"subnets"`
	Regions []EdgeCustomRegion `json:"regions"`
}

// EdgeCustomRegion is what an edge holds of one region's custom routing
// state; Known is false until the region sent it.
type EdgeCustomRegion struct {
	Name      string          `json:"name"`
	Known     bool            `json:"known"`
	Overrides []OverrideState `json:"overrides"`
	Down      []DownState     `json:"down"`
}

func overrideStates(os []portmap.Override) []OverrideState {
	out := make([]OverrideState, 0, len(os))
	for _, o := range os {
		out = append(out, OverrideState{Subnet: o.Subnet, Address: o.Addr, Port: o.Port, Allow: o.Allow})
	}
	return out
}

// blocks lists the subnets' blocks, only those of region unless it is
// empty, filtered by q's accelerator and subnet.
func (p *customPlan) blocks(region string, q admin.PortMapQuery) []SubnetBlock {
	out := []SubnetBlock{}
	for _, t := range p.tables {
		if q.Accelerator != "" && t.Accelerator() != q.Accelerator {
			continue
		}
		for _, s := range t.Subnets() {
			if (region != "" && s.Region != region) || (q.Subnet != "" && s.ID != q.Subnet) {
				continue
			}
			first, last, _ := t.BlockOf(s.ID)
			b := SubnetBlock{Accelerator: t.Accelerator(), Listener: t.Key(), Subnet: s.ID, Region: s.Region, CIDR: s.Prefix,
				FirstPort: first, LastPort: last}
			for _, d := range s.Ports {
				b.DestinationPorts = append(b.DestinationPorts, DestPortsRange{From: d.From, To: d.To, Protocols: d.Protos.Names()})
			}
			out = append(out, b)
		}
	}
	return out
}

// portMap answers a port-map query; allowed gives the node's verdict on
// a destination (known false: unknown).
func (p *customPlan) portMap(q admin.PortMapQuery, allowed func(m portmap.Mapping) (bool, bool)) (PortMapAnswer, error) {
	var dest netip.AddrPort
	if q.Destination != "" {
		d, err := netip.ParseAddrPort(q.Destination)
		if err != nil {
			return PortMapAnswer{}, &admin.StatusError{Status: http.StatusBadRequest,
				Err: fmt.Errorf("destination %q is not address:port", q.Destination)}
		}
		dest = netip.AddrPortFrom(d.Addr().Unmap(), d.Port())
	}
	if !dest.IsValid() && q.Port == 0 && !q.Expand {
		return PortMapAnswer{Subnets: p.blocks("", q)}, nil
	}
	ans := PortMapAnswer{Mappings: []PortMapping{}}
	add := func(cl customListener, m portmap.Mapping) {
		if q.Subnet != "" && m.Subnet.ID != q.Subnet {
			return
		}
		pm := PortMapping{Accelerator: cl.acc.Name, Addresses: slices.Clone(cl.acc.IPAddresses), ListenerPort: m.ListenerPort,
			Destination: m.Dest, Protocols: m.Protos.Names(), Subnet: m.Subnet.ID, Region: m.Subnet.Region}
		if a, known := allowed(m); known {
			pm.Allowed = &a
		}
		ans.Mappings = append(ans.Mappings, pm)
	}
	var buf [4]portmap.Mapping
	for _, cl := range p.listeners {
		if q.Accelerator != "" && cl.acc.Name != q.Accelerator {
			continue
		}
		switch {
		case dest.IsValid():
			for _, m := range cl.table.Reverse(dest, buf[:0]) {
				if q.Port == 0 || int(m.ListenerPort) == q.Port {
					add(cl, m)
				}
			}
		case q.Port != 0:
			if m, ok := cl.table.Forward(uint16(q.Port)); ok {
				add(cl, m)
			}
		default:
			for m := range cl.table.All {
				add(cl, m)
			}
		}
	}
	return ans, nil
}

// regionOf names the region serving subnet id.
func (p *customPlan) regionOf(id string) (string, bool) {
	for _, t := range p.tables {
		if s, ok := t.Subnet(id); ok {
			return s.Region, true
		}
	}
	return "", false
}

// op turns a request into a port map operation.
func trafficOp(req admin.TrafficRequest, allow bool) (portmap.Op, error) {
	op := portmap.Op{Subnet: req.Subnet, Allow: allow, Grant: portmap.Grant{All: req.All}}
	for _, s := range req.Addresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return op, fmt.Errorf("address %q is not an IP address", s)
		}
		op.Addrs = append(op.Addrs, a.Unmap())
	}
	for _, n := range req.Ports {
		if n < 1 || n > 65535 {
			return op, fmt.Errorf("port %d is outside 1–65535", n)
		}
		op.Ports = append(op.Ports, uint16(n))
	}
	return op, nil
}

// notAuthority is the answer of a node that does not serve subnet id.
func (p *customPlan) notAuthority(id, here string) error {
	region, ok := p.regionOf(id)
	if !ok {
		return &admin.StatusError{Status: http.StatusNotFound, Err: fmt.Errorf("no custom routing subnet %q", id)}
	}
	return &admin.StatusError{Status: http.StatusConflict,
		Err: fmt.Errorf("subnet %q is served by region %s, the authority on its allows: send this to its admin API, not %s's", id, region, here)}
}

// TrafficAnswer is the state of a region's overrides after an allow or
// deny.
type TrafficAnswer struct {
	Subnet    string          `json:"subnet"`
	Overrides []OverrideState `json:"overrides"`
}

// Traffic implements admin.TrafficController: the region applies the
// operation, and its edges learn it on their control streams.
func (r *regionNode) Traffic(req admin.TrafficRequest, allow bool) (any, error) {
	op, err := trafficOp(req, allow)
	if err != nil {
		return nil, err
	}
	r.probeMu.Lock()
	defer r.probeMu.Unlock()
	all, err := r.gw.ApplyCustom(op)
	switch {
	case errors.Is(err, gateway.ErrNotHere):
		return nil, r.live.Load().custom.notAuthority(req.Subnet, r.name)
	case errors.Is(err, portmap.ErrTooMany):
		return nil, &admin.StatusError{Status: http.StatusInsufficientStorage, Err: err}
	case err != nil:
		return nil, err
	}
	// Probe what is allowed one by one now: an allow of a destination
	// starts its probe, a deny stops it.
	probes, err := r.live.Load().custom.probeTargets(r.name, r.gw.CustomRules())
	if err == nil {
		err = r.dests.Update(probes)
	}
	if err != nil {
		return nil, fmt.Errorf("the operation is in force, but the probes did not follow it: %w", err)
	}
	ans := TrafficAnswer{Subnet: req.Subnet, Overrides: []OverrideState{}}
	for _, o := range overrideStates(all) {
		if o.Subnet == req.Subnet {
			ans.Overrides = append(ans.Overrides, o)
		}
	}
	return ans, nil
}

// PortMap implements admin.PortMapper with the region's own verdicts.
func (r *regionNode) PortMap(q admin.PortMapQuery) (any, error) {
	rules := r.gw.CustomRules()
	return r.live.Load().custom.portMap(q, func(m portmap.Mapping) (bool, bool) {
		if m.Subnet.Region != r.name {
			return false, false
		}
		return rules.Allowed(m.Subnet.ID, m.Dest), true
	})
}

// customStatus is the region's custom routing status; nil without any.
func (r *regionNode) customStatus() *RegionCustomStatus {
	blocks := r.live.Load().custom.blocks(r.name, admin.PortMapQuery{})
	if len(blocks) == 0 {
		return nil
	}
	st := &RegionCustomStatus{Subnets: blocks, Overrides: overrideStates(r.gw.CustomRules().Overrides()), Down: []DownState{},
		Probed: len(r.dests.Snapshot())}
	for _, d := range r.gw.DownDestinations() {
		ds := DownState{Subnet: d.Subnet, Destination: d.Dest, Reason: d.Reason, Probe: d.Probe}
		since := d.Since
		ds.Since = &since
		if !d.Probe {
			until := d.Until
			ds.Until = &until
		}
		st.Down = append(st.Down, ds)
	}
	return st
}

// Traffic implements admin.TrafficController: an edge is not the
// authority, and says which region is.
func (en *edgeNode) Traffic(req admin.TrafficRequest, _ bool) (any, error) {
	return nil, en.live.Load().custom.notAuthority(req.Subnet, en.name)
}

// PortMap implements admin.PortMapper with the verdicts the regions
// pushed.
func (en *edgeNode) PortMap(q admin.PortMapQuery) (any, error) {
	live := en.live.Load()
	return live.custom.portMap(q, func(m portmap.Mapping) (bool, bool) {
		allowed, _, known := live.regions.Destination(m.Subnet.Region, m.Subnet.ID, m.Dest)
		return allowed, known
	})
}

// customStatus is the edge's custom routing status; nil without any.
func (en *edgeNode) customStatus(live *edgeLive) *EdgeCustomStatus {
	if len(live.custom.tables) == 0 {
		return nil
	}
	st := &EdgeCustomStatus{Subnets: live.custom.blocks("", admin.PortMapQuery{}), Regions: []EdgeCustomRegion{}}
	var regions []string
	for _, b := range st.Subnets {
		if !slices.Contains(regions, b.Region) {
			regions = append(regions, b.Region)
		}
	}
	slices.Sort(regions)
	for _, name := range regions {
		er := EdgeCustomRegion{Name: name, Overrides: []OverrideState{}, Down: []DownState{}}
		if c := live.regions[name]; c != nil {
			if cs, ok := c.Custom(); ok {
				er.Known = true
				er.Overrides = overrideStates(cs.Overrides)
				er.Down = downStates(cs)
			}
		}
		st.Regions = append(st.Regions, er)
	}
	return st
}

func downStates(cs backbone.CustomState) []DownState {
	out := make([]DownState, 0, len(cs.Down))
	for _, d := range cs.Down {
		ds := DownState{Subnet: d.Subnet, Destination: d.Dest, Probe: d.Until.IsZero()}
		if !d.Until.IsZero() {
			until := d.Until
			ds.Until = &until
		}
		out = append(out, ds)
	}
	return out
}

var (
	_ admin.TrafficController = (*regionNode)(nil)
	_ admin.PortMapper        = (*regionNode)(nil)
	_ admin.TrafficController = (*edgeNode)(nil)
	_ admin.PortMapper        = (*edgeNode)(nil)
)
