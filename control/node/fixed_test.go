package node

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/config"
)

// TestFixedBackboneFEC: whether a region's or PoP's backbone sockets do
// forward error correction is settled when they open, so a reload that
// changes it waits for a restart, and says so.
func TestFixedBackboneFEC(t *testing.T) {
	doc := func(fec string) *config.Document {
		return &config.Document{Topology: config.Topology{
			PoPs:    []config.PoP{{Name: "pop", Backbone: config.BackboneClient{FEC: fec}}},
			Regions: []config.Region{{Name: "r1", Backbone: config.BackboneServer{Listen: "127.0.0.1:4433", FEC: fec}}},
		}}
	}
	for _, tc := range []struct{ name, path string }{
		{"r1", "topology.regions[r1].backbone.fec"},
		{"pop", "topology.pops[pop].backbone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, after := doc(config.FECAuto), doc(config.FECOff)
			nb, err := before.Node(tc.name)
			require.NoError(t, err)
			na, err := after.Node(tc.name)
			require.NoError(t, err)
			require.Equal(t, []string{tc.path}, fixedChanges(fixedSettings(before, nb), fixedSettings(after, na)))
		})
	}
}
