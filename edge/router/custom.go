package router

import (
	"errors"
	"net/netip"

	"github.com/anyedge/anyedge/backbone/portmap"
)

// ErrDenied is returned by Custom.Pick for a flow whose listener port
// reaches no destination, whose destination port does not serve its
// protocol, or whose destination its region does not allow.
var ErrDenied = errors.New("custom routing denied")

// ErrDestinationDown is returned by Custom.Pick for a destination its
// region reports down (failed probe or dial): refused at once rather than
// after a dial timeout.
var ErrDestinationDown = errors.New("destination down")

// CustomView is what a custom routing pick asks beyond View: the verdict
// of a destination's region. known is false while the edge holds nothing
// from that region; the flow then goes to the region, which decides.
type CustomView interface {
	View
	Destination(region, subnet string, dest netip.AddrPort) (allowed, up, known bool)
}

// Custom picks for a custom routing listener: the listener port a flow
// reached names one destination of one subnet (backbone/portmap), and so
// the only region and "endpoint" (the subnet ID) it can go to. There is no
// second choice: with exclude set, a retry finds no route. A Custom is
// immutable and safe for concurrent use.
type Custom struct {
	table *portmap.Table
	proto portmap.Proto
}

// NewCustom returns the picker of one protocol (6 or 17) of the listener
// compiled into table.
func NewCustom(table *portmap.Table, proto uint8) *Custom {
	c := &Custom{table: table, proto: portmap.TCP}
	if proto == 17 {
		c.proto = portmap.UDP
	}
	return c
}

// Table returns the listener's port map.
func (c *Custom) Table() *portmap.Table { return c.table }

// Pick returns the region and subnet of the destination f.Dst's port
// reaches, or ErrDenied, ErrDestinationDown or ErrNoRoute (the region is
// unreachable, or already tried).
func (c *Custom) Pick(f Flow, v View, exclude Exclude) (Choice, error) {
	m, ok := c.table.Forward(f.Dst.Port())
	if !ok || !m.Protos.Has(c.proto) {
		return Choice{}, ErrDenied
	}
	region, id := m.Subnet.Region, m.Subnet.ID
	if _, reachable := v.RegionRTT(region); !reachable || (exclude != nil && exclude(region, id)) {
		return Choice{}, ErrNoRoute
	}
	if cv, ok := v.(CustomView); ok {
		allowed, up, known := cv.Destination(region, id, m.Dest)
		switch {
		case known && !allowed:
			return Choice{}, ErrDenied
		case known && !up:
			return Choice{}, ErrDestinationDown
		}
	}
	return Choice{Region: region, EndpointID: id}, nil
}

// Picker chooses the region and endpoint of a new flow: a Table (standard
// listeners) or a Custom (custom routing).
type Picker interface {
	Pick(f Flow, v View, exclude Exclude) (Choice, error)
}

var (
	_ Picker = (*Table)(nil)
	_ Picker = (*Custom)(nil)
)
