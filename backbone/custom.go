package backbone

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/anyedge/anyedge/backbone/portmap"
	"github.com/anyedge/anyedge/backbone/wire"
)

// customView is what an edge holds of one region's custom routing state:
// the configured rules with the region's run-time overrides in place, and
// the destinations the region refuses without a dial. Immutable.
type customView struct {
	rules     *portmap.Rules
	overrides []portmap.Override
	down      map[customDest]time.Time // zero: until the region says otherwise
	received  time.Time
}

type customDest struct {
	subnet string
	dest   netip.AddrPort
}

// applyCustom builds the view of a custom routing message; without
// configured rules (ClientConfig.CustomRules, SetCustomRules) the message
// is kept but not applied.
func (c *Client) applyCustom(m wire.CustomRouting) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	c.lastCustom, c.lastAt = &m, time.Now()
	c.buildCustom()
	c.signal()
}

// SetCustomRules replaces the configured custom routing rules (a
// reload); the region's last state is laid over the new rules at once.
// Nil: the edge serves no custom routing.
func (c *Client) SetCustomRules(r *portmap.Rules) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	c.rules = r
	c.buildCustom()
	c.signal()
}

// forgetCustom drops the region's state (unreachable).
func (c *Client) forgetCustom() {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	c.lastCustom = nil
	c.custom.Store(nil)
}

// buildCustom makes the view from the rules and the region's last
// message; c.cmu is held.
func (c *Client) buildCustom() {
	m := c.lastCustom
	if c.rules == nil || m == nil {
		c.custom.Store(nil)
		return
	}
	now := c.lastAt
	v := &customView{down: make(map[customDest]time.Time, len(m.Down)), received: now}
	for _, o := range m.Overrides {
		po := portmap.Override{Subnet: o.Subnet, Port: o.Port, Allow: o.Allow}
		if o.Address != "" {
			a, err := netip.ParseAddr(o.Address)
			if err != nil {
				continue
			}
			po.Addr = a
		}
		v.overrides = append(v.overrides, po)
	}
	v.rules = c.rules.WithOverrides(v.overrides)
	for _, d := range m.Down {
		dest, err := netip.ParseAddrPort(d.Dest)
		if err != nil {
			continue
		}
		var until time.Time
		if d.ForMillis > 0 {
			until = now.Add(time.Duration(d.ForMillis) * time.Millisecond)
		}
		v.down[customDest{d.Subnet, dest}] = until
	}
	c.custom.Store(v)
}

// Destination reports the region's verdict on a custom routing
// destination: whether it is allowed and up. known is false while the
// region has sent no custom routing state (a region of control protocol 2,
// or an unreachable one): then the region decides each flow itself.
func (c *Client) Destination(subnet string, dest netip.AddrPort) (allowed, up, known bool) {
	v := c.custom.Load()
	if v == nil {
		return false, false, false
	}
	until, down := v.down[customDest{subnet, dest}]
	if down && !until.IsZero() && time.Now().After(until) {
		down = false
	}
	return v.rules.Allowed(subnet, dest), !down, true
}

// CustomState is what an edge holds of a region's custom routing state.
type CustomState struct {
	// Overrides are the region's run-time allows and denies.
	Overrides []portmap.Override
	// Down are the destinations refused without a dial.
	Down []CustomDown
	// Received is when the region last sent it.
	Received time.Time
}

// Custom returns the region's custom routing state; ok is false when it
// sent none.
func (c *Client) Custom() (st CustomState, ok bool) {
	v := c.custom.Load()
	if v == nil {
		return st, false
	}
	st = CustomState{Overrides: v.overrides, Received: v.received}
	now := time.Now()
	for d, until := range v.down {
		if until.IsZero() || now.Before(until) {
			st.Down = append(st.Down, CustomDown{Subnet: d.subnet, Dest: d.dest, Until: until})
		}
	}
	slices.SortFunc(st.Down, func(a, b CustomDown) int {
		if c := strings.Compare(a.Subnet, b.Subnet); c != 0 {
			return c
		}
		return a.Dest.Compare(b.Dest)
	})
	return st, true
}

// CustomDown is a custom routing destination its region refuses without
// a dial, until Until (zero: until the region says otherwise).
type CustomDown struct {
	Subnet string
	Dest   netip.AddrPort
	Until  time.Time
}

// Destination implements router.CustomView: the verdict of region's
// custom routing state (known false when the edge holds none).
func (r Regions) Destination(region, subnet string, dest netip.AddrPort) (allowed, up, known bool) {
	c := r[region]
	if c == nil {
		return false, false, false
	}
	return c.Destination(subnet, dest)
}
