package gateway_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/wire"
)

// TestControlCapabilitiesOldAndNewEdges: an edge of control protocol 4
// gets the region's hello, listing held delivery, TLS fields and striping,
// after the first health, load and fleet; an edge of protocol 3 (from
// before capabilities) never sees it; a region with striping off does not
// list it.
func TestControlCapabilitiesOldAndNewEdges(t *testing.T) {
	for _, tc := range []struct {
		name     string
		noStripe bool
		want     []string
	}{{"striping", false, []string{wire.CapHold, wire.CapTLS, wire.CapStripe}}, {"striping off", true, []string{wire.CapHold, wire.CapTLS}}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0, func(cfg *gateway.Config, _ *endpoint) { cfg.NoStripe = tc.noStripe })
			_, oldR := f.control(t, 3)
			_, newR := f.control(t, 4)
			for _, r := range []*msgReader{oldR, newR} {
				for _, want := range []wire.MsgType{wire.MsgHealth, wire.MsgLoad, wire.MsgFleet} {
					typ, _ := r.next(t)
					require.Equal(t, want, typ)
				}
			}
			typ, body := newR.next(t)
			require.Equal(t, wire.MsgHello, typ)
			var h wire.Hello
			require.NoError(t, json.Unmarshal(body, &h))
			require.Equal(t, tc.want, h.Caps)
			require.Equal(t, wire.ControlProto, h.Proto)
			// The old edge gets load reports and nothing else.
			typ, _ = oldR.next(t)
			require.Equal(t, wire.MsgLoad, typ)
		})
	}
}
