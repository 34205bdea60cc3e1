package edge_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/flow"
)

// overloadedRegion answers its control stream and every flow with
// CodeOverloaded: a region at its own flow limit.
type overloadedRegion struct{}

func (overloadedRegion) ServeStream(ctx context.Context, _ backbone.Peer, s *quic.Stream) {
	h, err := wire.ReadHeader(s)
	if err == nil && h.Kind == wire.KindControl {
		_, _ = io.ReadFull(s, make([]byte, 1))
		_ = wire.WriteMsg(s, wire.MsgHealth, wire.Health{Full: true})
		<-ctx.Done()
	} else if err == nil {
		_, _ = s.Write([]byte{byte(wire.CodeOverloaded)})
	}
	s.CancelRead(wire.StreamShutdown)
	_ = s.Close()
}

// TestOverloadedRegionTriesElsewhere: the preferred region answers
// "overloaded"; the flow goes to the next region at once (a retry, not a
// hedge), and to no other endpoint of the overloaded one.
func TestOverloadedRegionTriesElsewhere(t *testing.T) {
	port := freePort(t)
	echo := netip.MustParseAddrPort(echoServer(t))
	e, rec := startRegionsLab(t, port, edge.EarlyOff, []labRegion{
		{name: "full", handler: overloadedRegion{}, endpoints: []string{"full-1", "full-2", "full-3"}},
		{name: "good", handler: echoGateway(port, map[string]netip.AddrPort{"good-1": echo}), endpoints: []string{"good-1"}},
	})
	require.NoError(t, echoOnce(net.JoinHostPort("127.0.0.1", itoa(port)), 1024))
	st := e.Stats()
	require.EqualValues(t, 1, st.Retries, "one retry, in the other region")
	require.Zero(t, st.Hedges)
	r := rec.wait(t)
	require.Equal(t, "good", r.Region)
	require.Equal(t, flow.ClientFIN, r.Reason)
}

// TestOverloadedEverywhere: when the only region is overloaded, the flow
// is refused with region_overloaded (its client gets a reset), after one
// attempt: the region's other endpoints are not tried.
func TestOverloadedEverywhere(t *testing.T) {
	port := freePort(t)
	e, rec := startRegionsLab(t, port, edge.EarlyOff, []labRegion{
		{name: "full", handler: overloadedRegion{}, endpoints: []string{"full-1", "full-2", "full-3"}},
	})
	// The refusal resets the connection, maybe before Dial has returned.
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(port))); err == nil {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
		require.Error(t, err)
		_ = c.Close()
	}
	r := rec.wait(t)
	require.Equal(t, flow.RegionOverloaded, r.Reason)
	require.Zero(t, e.Stats().Retries, "another endpoint of an overloaded region was tried")
}
