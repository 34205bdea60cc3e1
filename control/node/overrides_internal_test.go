package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
)

// TestOverridesApply: overrides reach their endpoint and every group of
// their region, in a copy; the document itself
// is untouched, and a document without the name drops the override.
func TestOverridesApply(t *testing.T) {
	l, err := config.Parse([]byte(`accelerators:
  - name: web
    ip_addresses: [203.0.113.10]
    listeners:
      - protocol: tcp
        port_ranges: [{from: 443}]
        endpoint_groups:
          - {region: r1, endpoints: [{id: e1, address: "198.18.0.10:443"}, {id: e2, address: "198.18.0.11:443"}]}
          - {region: r2, endpoints: [{id: e3, address: "198.18.0.12:443"}]}
      - protocol: tcp
        port_ranges: [{from: 80}]
        endpoint_groups:
          - {region: r1, endpoints: [{id: e4, address: "198.18.0.10:80"}]}
topology:
  pops: [{name: pop}]
  regions: [{name: r1, backbone: {listen: "198.18.0.1:4433"}}, {name: r2, backbone: {listen: "198.18.0.2:4433"}}]
`), config.LoadOptions{Env: []string{}})
	require.NoError(t, err)
	doc := l.Doc
	v := func(n int) *int { return &n }
	var o overrides
	now := time.Now()
	for _, req := range []admin.OverrideRequest{{Kind: "weight", Name: "e1", Value: v(0)}, {Kind: "dial", Name: "r1", Value: v(30)}} {
		o, err = o.change(req, doc, now)
		require.NoError(t, err)
	}
	got := o.apply(doc)
	ls := got.Accelerators[0].Listeners
	require.Equal(t, 0, *ls[0].EndpointGroups[0].Endpoints[0].Weight)
	require.Equal(t, 128, *ls[0].EndpointGroups[0].Endpoints[1].Weight)
	require.Equal(t, 128, *ls[1].EndpointGroups[0].Endpoints[0].Weight)
	require.Equal(t, 30, *ls[0].EndpointGroups[0].TrafficDial)
	require.Equal(t, 30, *ls[1].EndpointGroups[0].TrafficDial, "every group of r1")
	require.Equal(t, 100, *ls[0].EndpointGroups[1].TrafficDial)
	orig := doc.Accelerators[0].Listeners
	require.Equal(t, 128, *orig[0].EndpointGroups[0].Endpoints[0].Weight, "the document was changed")
	require.Equal(t, 100, *orig[1].EndpointGroups[0].TrafficDial, "the document was changed")
	require.Same(t, doc, overrides{}.apply(doc), "no overrides, no copy")

	// A document without r1 and e1: both dropped.
	d2 := doc.Clone()
	d2.Accelerators[0].Listeners = d2.Accelerators[0].Listeners[:1]
	d2.Accelerators[0].Listeners[0].EndpointGroups = d2.Accelerators[0].Listeners[0].EndpointGroups[1:]
	d2.Topology.Regions = d2.Topology.Regions[1:]
	kept, dropped := o.prune(&d2)
	require.True(t, kept.empty())
	require.Len(t, dropped, 2)
}
