package backbone_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/wire"
)

// startStripingClient runs a pool of k connections that stripes every TCP
// flow over lanes connections after its first byte.
func (l *lab) startStripingClient(t *testing.T, addr string, k, lanes int) *backbone.Client {
	t.Helper()
	c, _ := runClient(t, backbone.ClientConfig{
		Region: regionName, Addr: addr, Connections: k,
		Stripe: backbone.StripeConfig{Lanes: lanes, After: 1, MinRTT: time.Nanosecond},
		TLS:    l.clientTLS(t, edgeName), Hello: backbone.Hello(edgeName, "test"),
	})
	return c
}

func tcpHeader() *wire.Header {
	return &wire.Header{Kind: wire.KindTCP, ListenerPort: listenerPort, EndpointID: endpointID,
		Client:      netip.MustParseAddrPort("198.18.0.5:40000"),
		Accelerator: netip.MustParseAddrPort("203.0.113.10:8080")}
}

// writeAndClose writes data then closes the sending direction, in the
// background; the channel gets the first error, or nil.
func writeAndClose(s backbone.Stream, data []byte) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := s.Write(data)
		if err == nil {
			err = s.Close()
		}
		errc <- err
	}()
	return errc
}

// echoBulk sends data (after early, which went with the header) through
// an open flow to the echo endpoint and checks it all comes back.
func echoBulk(t *testing.T, s backbone.Stream, early, data []byte) {
	t.Helper()
	errc := writeAndClose(s, data)
	got, err := io.ReadAll(s)
	require.NoError(t, err)
	require.NoError(t, <-errc)
	require.True(t, bytes.Equal(append(append([]byte{}, early...), data...), got), "echo differs: got %d bytes", len(got))
}

func TestStripedFlowOverSeveralConnections(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	c := l.startStripingClient(t, r.addr, 3, 3)
	waitLive(t, c, 3)
	eventually(t, 5*time.Second, c.CanStripe, "the region never offered striping")
	regions := backbone.Regions{regionName: c}

	early := []byte("GET / HTTP/1.1\r\n\r\n")
	s, err := regions.OpenFlow(context.Background(), regionName, tcpHeader(), early, 5*time.Second)
	require.NoError(t, err)
	defer s.Release()
	require.True(t, s.Striped())
	data := make([]byte, 4<<20)
	_, _ = rand.Read(data)
	echoBulk(t, s, early, data)
	// The flow's lanes rode every connection of the pool.
	used := 0
	for _, n := range r.rec.live() {
		if n > 0 {
			used++
		}
	}
	require.Equal(t, 3, used, "streams per connection: %v", r.rec.live())
	goodFlow(t, c)
}

func TestStripedFlowSurvivesADyingConnection(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	c := l.startStripingClient(t, r.addr, 3, 3)
	waitLive(t, c, 3)
	eventually(t, 5*time.Second, c.CanStripe, "the region never offered striping")
	regions := backbone.Regions{regionName: c}
	s, err := regions.OpenFlow(context.Background(), regionName, tcpHeader(), nil, 5*time.Second)
	require.NoError(t, err)
	defer s.Release()
	data := make([]byte, 8<<20)
	_, _ = rand.Read(data)
	errc := writeAndClose(s, data)
	got := make([]byte, 0, len(data))
	buf := make([]byte, 64<<10)
	killed := false
	for {
		n, err := s.Read(buf)
		got = append(got, buf[:n]...)
		if !killed && len(got) > 1<<20 {
			// Close one of the lanes' connections from the region side
			// (not the first lane's: the flow's answer came on it).
			for conn, n := range r.rec.live() {
				if n > 0 && conn != nil {
					_ = conn.CloseWithError(wire.ConnShutdown, "test: path dies")
					killed = true
					break
				}
			}
		}
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.NoError(t, <-errc)
	require.True(t, killed)
	require.True(t, bytes.Equal(data, got), "got %d bytes of %d", len(got), len(data))
}

func TestNoStripingWithoutTheRegionsOffer(t *testing.T) {
	// A region that does not offer striping (as a region from before it):
	// the edge sends plain version 1 flows and they work.
	l := newLab(t)
	r := l.startRegion(t, regionOpts{gw: gateway.Config{NoStripe: true}})
	c := l.startStripingClient(t, r.addr, 2, 2)
	waitLive(t, c, 2)
	eventually(t, 5*time.Second, func() bool { _, ok := c.Load(); return ok }, "no load report")
	require.False(t, c.CanStripe())
	regions := backbone.Regions{regionName: c}
	s, err := regions.OpenFlow(context.Background(), regionName, tcpHeader(), []byte("hi"), 5*time.Second)
	require.NoError(t, err)
	defer s.Release()
	require.False(t, s.Striped())
	echoBulk(t, s, []byte("hi"), bytes.Repeat([]byte("x"), 1<<20))
}
