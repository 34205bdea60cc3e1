package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyedge/anyedge/backbone/portmap"
	"github.com/anyedge/anyedge/backbone/wire"
)

// Custom routing at the region. An edge names a custom routing flow by
// its subnet ID and listener port only; the region computes the
// destination with the same port map (backbone/portmap) from its own
// configuration, so nothing on the wire can make it dial an address
// outside its own subnets. The region is the authority on which
// destinations are allowed (configuration plus run-time operations,
// ApplyCustom) and which are down (failed probe or dial): it refuses the
// rest without dialling.

// DefaultDownFor is how long a custom routing destination whose dial
// failed is refused without a dial, when Config.DownFor is zero.
const DefaultDownFor = 10 * time.Second

// CustomSubnet is one custom routing subnet of the region.
type CustomSubnet struct {
	// Table is the port map of the subnet's listener.
	Table *portmap.Table
	// ProxyProtocol sends a PROXY protocol v2 header to destinations.
	ProxyProtocol bool
	// IdleTCP and IdleUDP cut flows without traffic (0: never, and for
	// UDP DefaultUDPIdleTimeout).
	IdleTCP, IdleUDP time.Duration
}

// Custom is the region's custom routing configuration.
type Custom struct {
	// Subnets are the region's own subnets, by ID.
	Subnets map[string]CustomSubnet
	// Rules are the configured allow rules of (at least) those subnets.
	Rules *portmap.Rules
}

// customState is an immutable snapshot: subnets and the rules in force.
type customState struct {
	subnets map[string]CustomSubnet
	rules   *portmap.Rules
}

// custom is the gateway's custom routing state.
type custom struct {
	state atomic.Pointer[customState]
	// mu serialises run-time operations (read, apply, swap).
	mu      sync.Mutex
	downFor time.Duration

	// dmu guards down.
	dmu  sync.RWMutex
	down map[downKey]*Down
}

type downKey struct {
	subnet string
	dest   netip.AddrPort
}

// Down is a custom routing destination the region refuses without
// dialling.
type Down struct {
	Subnet string
	Dest   netip.AddrPort
	// Since is when it went down; Until, for a failed dial, when the next
	// flow dials again (zero while its probe fails).
	Since, Until time.Time
	Reason       string
	// Probe is set when a failed probe (rather than a dial) put it down.
	Probe bool
}

// SetCustom replaces the custom routing configuration (start-up and
// reload). Run-time overrides of subnets that remain are kept.
func (g *Gateway) SetCustom(c Custom) {
	g.custom.mu.Lock()
	defer g.custom.mu.Unlock()
	rules := c.Rules
	if old := g.custom.state.Load(); old != nil && rules != nil {
		rules = rules.WithOverrides(old.rules.Overrides())
	}
	g.custom.state.Store(&customState{subnets: c.Subnets, rules: rules})
	g.notifyCustom()
	g.cutRemoved()
}

// ErrNotHere is returned by ApplyCustom for a subnet another region serves.
var ErrNotHere = errors.New("subnet is not served by this region")

// ApplyCustom applies a run-time allow or deny and returns the overrides
// now in force. Edges learn the change on their control streams.
func (g *Gateway) ApplyCustom(op portmap.Op) ([]portmap.Override, error) {
	g.custom.mu.Lock()
	defer g.custom.mu.Unlock()
	st := g.custom.state.Load()
	if st == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotHere, op.Subnet)
	}
	if _, ok := st.subnets[op.Subnet]; !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotHere, op.Subnet)
	}
	rules, err := st.rules.Apply(op)
	if err != nil {
		return nil, err
	}
	g.custom.state.Store(&customState{subnets: st.subnets, rules: rules})
	g.notifyCustom()
	return rules.Overrides(), nil
}

// CustomRules returns the rules in force (nil without custom routing).
func (g *Gateway) CustomRules() *portmap.Rules {
	if st := g.custom.state.Load(); st != nil {
		return st.rules
	}
	return nil
}

// notifyCustom pokes every control stream: the custom routing state
// changed.
func (g *Gateway) notifyCustom() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for ch := range g.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// resolveCustom finds the destination a custom routing stream names: the
// subnet ID and listener port of h, mapped by the region's own port map.
func (g *Gateway) resolveCustom(h *wire.Header) (*Endpoint, wire.Code) {
	st := g.custom.state.Load()
	if st == nil {
		return nil, wire.CodeUnknownEndpoint
	}
	cs, ok := st.subnets[h.EndpointID]
	if !ok {
		return nil, wire.CodeUnknownEndpoint
	}
	m, ok := cs.Table.ForwardIn(h.EndpointID, h.ListenerPort)
	if !ok {
		return nil, wire.CodeNotAllowed
	}
	proto, idle := portmap.TCP, cs.IdleTCP
	if h.Kind == wire.KindUDP {
		proto, idle = portmap.UDP, cs.IdleUDP
	}
	switch {
	case !m.Protos.Has(proto), !st.rules.Allowed(h.EndpointID, m.Dest):
		return nil, wire.CodeDenied
	case g.isDown(h.EndpointID, m.Dest):
		return nil, wire.CodeDestinationDown
	}
	return &Endpoint{
		ID: h.EndpointID, Host: m.Dest.Addr().String(), Port: m.Dest.Port(),
		ListenerPorts: [][2]uint16{{h.ListenerPort, h.ListenerPort}},
		ProxyProtocol: cs.ProxyProtocol, IdleTimeout: idle, dest: m.Dest,
	}, wire.CodeOK
}

func (g *Gateway) isDown(subnet string, dest netip.AddrPort) bool {
	g.custom.dmu.RLock()
	d := g.custom.down[downKey{subnet, dest}]
	g.custom.dmu.RUnlock()
	return d != nil && (d.Probe || time.Now().Before(d.Until))
}

// markDown records a failed dial to a custom routing destination: flows
// to it are refused without a dial for DownFor.
func (g *Gateway) markDown(subnet string, dest netip.AddrPort, reason string) {
	now := time.Now()
	k := downKey{subnet, dest}
	g.custom.dmu.Lock()
	d := g.custom.down[k]
	changed := d == nil || (!d.Probe && !now.Before(d.Until))
	if d == nil {
		d = &Down{Subnet: subnet, Dest: dest, Since: now}
		if g.custom.down == nil {
			g.custom.down = map[downKey]*Down{}
		}
		g.custom.down[k] = d
	} else if changed {
		d.Since = now
	}
	if !d.Probe {
		d.Until, d.Reason = now.Add(g.custom.downFor), reason
	}
	g.custom.dmu.Unlock()
	if changed {
		g.notifyCustom()
	}
}

// SetProbed records the outcome of a destination's probe: a failing one is
// down until a probe succeeds; a success also clears a failed dial.
func (g *Gateway) SetProbed(subnet string, dest netip.AddrPort, healthy bool, reason string) {
	k := downKey{subnet, dest}
	g.custom.dmu.Lock()
	d := g.custom.down[k]
	changed := false
	switch {
	case healthy && d != nil:
		delete(g.custom.down, k)
		changed = true
	case !healthy && (d == nil || !d.Probe):
		if d == nil {
			d = &Down{Subnet: subnet, Dest: dest, Since: time.Now()}
			if g.custom.down == nil {
				g.custom.down = map[downKey]*Down{}
			}
			g.custom.down[k] = d
		}
		d.Probe, d.Until, d.Reason = true, time.Time{}, reason
		changed = true
	}
	g.custom.dmu.Unlock()
	if changed {
		g.notifyCustom()
	}
}

// ClearProbed forgets a destination's probe (no longer probed, or not
// probed yet): a mark a failing probe set is dropped, a failed dial's
// mark is kept.
func (g *Gateway) ClearProbed(subnet string, dest netip.AddrPort) {
	k := downKey{subnet, dest}
	g.custom.dmu.Lock()
	d := g.custom.down[k]
	changed := d != nil && d.Probe
	if changed {
		delete(g.custom.down, k)
	}
	g.custom.dmu.Unlock()
	if changed {
		g.notifyCustom()
	}
}

// DownDestinations lists the destinations refused without a dial now,
// by subnet and destination; expired dial failures are dropped.
func (g *Gateway) DownDestinations() []Down {
	now := time.Now()
	g.custom.dmu.Lock()
	out := make([]Down, 0, len(g.custom.down))
	for k, d := range g.custom.down {
		if !d.Probe && !now.Before(d.Until) {
			delete(g.custom.down, k)
			continue
		}
		out = append(out, *d)
	}
	g.custom.dmu.Unlock()
	slices.SortFunc(out, func(a, b Down) int {
		if c := strings.Compare(a.Subnet, b.Subnet); c != 0 {
			return c
		}
		return a.Dest.Compare(b.Dest)
	})
	return out
}

// customMsg is the custom routing state the region pushes to edges of
// control protocol 3; false without custom routing.
func (g *Gateway) customMsg() (wire.CustomRouting, bool) {
	st := g.custom.state.Load()
	if st == nil {
		return wire.CustomRouting{}, false
	}
	m := wire.CustomRouting{Overrides: []wire.CustomOverride{}, Down: []wire.CustomDown{}}
	for _, o := range st.rules.Overrides() {
		wo := wire.CustomOverride{Subnet: o.Subnet, Port: o.Port, Allow: o.Allow}
		if o.Addr.IsValid() {
			wo.Address = o.Addr.String()
		}
		m.Overrides = append(m.Overrides, wo)
	}
	now := time.Now()
	for _, d := range g.DownDestinations() {
		if len(m.Down) == wire.MaxCustomDown {
			break
		}
		wd := wire.CustomDown{Subnet: d.Subnet, Dest: d.Dest.String()}
		if !d.Probe {
			wd.ForMillis = max(d.Until.Sub(now).Milliseconds(), 1)
		}
		m.Down = append(m.Down, wd)
	}
	return m, true
}
