package backbone_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
)

// startFECClient runs a pool of k connections with the given FEC
// configuration (no striping).
func (l *lab) startFECClient(t *testing.T, addr string, k int, fc backbone.FECConfig) *backbone.Client {
	t.Helper()
	c, _ := runClient(t, backbone.ClientConfig{
		Region: regionName, Addr: addr, Connections: k, FEC: fc,
		Stripe: backbone.StripeConfig{Lanes: 1},
		TLS:    l.clientTLS(t, edgeName), Hello: backbone.Hello(edgeName, "test"),
	})
	return c
}

// fecEcho sends 1 MiB through a flow and back.
func fecEcho(t *testing.T, c *backbone.Client) {
	t.Helper()
	regions := backbone.Regions{regionName: c}
	s, err := regions.OpenFlow(context.Background(), regionName, tcpHeader(), nil, 5*time.Second)
	require.NoError(t, err)
	defer s.Release()
	echoBulk(t, s, nil, bytes.Repeat([]byte("fec!"), 1<<18))
}

// loaded waits until the region's load report arrived: its hello came
// before it, so the FEC negotiation is over.
func loaded(t *testing.T, c *backbone.Client) {
	t.Helper()
	eventually(t, 5*time.Second, func() bool { _, ok := c.Load(); return ok }, "no load report")
}

func TestFECOnALongPathBothWays(t *testing.T) {
	// MinRTT of 1 ns makes loopback a "long" path.
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	c := l.startFECClient(t, r.addr, 2, backbone.FECConfig{MinRTT: time.Nanosecond})
	waitLive(t, c, 2)
	eventually(t, 5*time.Second, func() bool { return c.FECPaths() == 2 }, "FEC is not on for both connections")
	fecEcho(t, c)
	eventually(t, 5*time.Second, func() bool {
		return c.FECStats().ParitySent > 0 && r.srv.FECStats().ParitySent > 0
	}, "no parity sent both ways")
	// A receiver enabled before its peer counts the peer's last plain
	// datagrams into the first group: at most one mismatch per connection
	// and direction.
	require.LessOrEqual(t, c.FECStats().Mismatched+r.srv.FECStats().Mismatched, uint64(4))
}

func TestNoFECOnANearPath(t *testing.T) {
	// The default MinRTT (20 ms) is far above loopback's: both ends speak
	// FEC, and the edge never turns it on.
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	c := l.startFECClient(t, r.addr, 1, backbone.FECConfig{})
	waitLive(t, c, 1)
	loaded(t, c)
	require.True(t, c.Offers("fec"), "both speak it")
	fecEcho(t, c)
	require.Zero(t, c.FECPaths())
	require.Zero(t, c.FECStats().ParitySent+r.srv.FECStats().ParitySent)
}

func TestNoFECWithARegionWithout(t *testing.T) {
	// A region without FEC (NoFEC, or from before it: it ignores the
	// capability it does not know) leaves a new edge's packets plain.
	l := newLab(t)
	r := l.startRegion(t, regionOpts{noFEC: true})
	c := l.startFECClient(t, r.addr, 1, backbone.FECConfig{MinRTT: time.Nanosecond})
	waitLive(t, c, 1)
	loaded(t, c)
	require.False(t, c.Offers("fec"))
	fecEcho(t, c)
	require.Zero(t, c.FECPaths())
	require.Zero(t, c.FECStats().ParitySent)
}

func TestNoFECWithAnEdgeWithout(t *testing.T) {
	// An edge without FEC (Off, or from before it: its hello never asks)
	// gets plain packets from a region that has it.
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	c := l.startFECClient(t, r.addr, 1, backbone.FECConfig{Off: true, MinRTT: time.Nanosecond})
	waitLive(t, c, 1)
	loaded(t, c)
	require.False(t, c.Offers("fec"))
	fecEcho(t, c)
	require.Zero(t, r.srv.FECStats().ParitySent)
}
