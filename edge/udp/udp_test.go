package udp_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
)

// simple starts one region with the given endpoints and one edge.
func simple(t *testing.T, proxy bool, o edgeOpts) (*fleet, *region, *edgeNode, *echoEndpoint) {
	t.Helper()
	f := newFleet(t, "pop-1", "pop-2")
	echo := startEcho(t, proxy)
	if o.port == 0 {
		o.port = freeUDPPort(t)
	}
	o.endpoints = []string{"echo-1"}
	r := f.startRegion(t, "127.0.0.1:0", []gateway.Endpoint{gatewayEndpoint("echo-1", echo.addrPort(), o.port, proxy)})
	e := f.startEdge(t, "pop-1", r.addr(), o)
	return f, r, e, echo
}

func TestEchoAndPayloadSizes(t *testing.T) {
	_, r, e, _ := simple(t, false, edgeOpts{})
	c := dialClient(t, e.addrs[0])
	for _, size := range []int{1, 64, 1200, 1472, 9000, 60000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			p := bytes.Repeat([]byte{byte(size)}, size)
			for i := range p {
				p[i] = byte(i * 7)
			}
			require.True(t, roundTrip(c, p, 3*time.Second), "payload of %d bytes did not come back intact", size)
		})
	}
	st := e.fwd.Stats()
	require.Positive(t, st.FallbackUp, "9000 bytes cannot fit a datagram: the stream carries it")
	require.Positive(t, st.FallbackDown)
	require.Zero(t, st.Dropped)
	require.Equal(t, int64(1), st.Flows)
	require.Positive(t, r.gw.UDPStats().FallbackToEdge)
}

func TestProxyV2EveryDatagram(t *testing.T) {
	_, _, e, echo := simple(t, true, edgeOpts{})
	c := dialClient(t, e.addrs[0])
	for i := range 5 {
		p := []byte(fmt.Sprintf("packet %d", i))
		require.True(t, roundTrip(c, p, 3*time.Second))
	}
	big := bytes.Repeat([]byte("x"), 5000)
	require.True(t, roundTrip(c, big, 3*time.Second), "fallback packets carry the header too")
	echo.mu.Lock()
	defer echo.mu.Unlock()
	require.Zero(t, echo.bad)
	require.Len(t, echo.headers, 6)
	client := c.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, h := range echo.headers {
		src, ok := h.SourceAddr.(*net.UDPAddr)
		require.True(t, ok, "source is a UDP address: %v", h.SourceAddr)
		require.Equal(t, client, netip.AddrPortFrom(src.AddrPort().Addr().Unmap(), src.AddrPort().Port()))
		dst := h.DestinationAddr.(*net.UDPAddr).AddrPort()
		require.Equal(t, e.addrs[0], netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()))
	}
}

func TestIdleTimeout(t *testing.T) {
	_, _, e, _ := simple(t, false, edgeOpts{idle: 200 * time.Millisecond})
	c := dialClient(t, e.addrs[0])
	require.True(t, roundTrip(c, []byte("hi"), 3*time.Second))
	require.Equal(t, int64(1), e.fwd.Stats().Flows)
	waitFor(t, 3*time.Second, func() bool { return e.fwd.Stats().Flows == 0 }, "idle flow not removed")
	// The flow opens afresh on its next packet.
	require.True(t, roundTrip(c, []byte("again"), 3*time.Second))
	require.Equal(t, int64(2), e.fwd.Stats().Opened)
}

func TestFlowTableFull(t *testing.T) {
	for _, tc := range []struct {
		name         string
		maxFlows     int
		maxPerSource int
		// extra is a client address that must still get a flow.
		extra netip.Addr
	}{
		{name: "table", maxFlows: 2, maxPerSource: 10},
		{name: "per source", maxFlows: 10, maxPerSource: 2, extra: netip.MustParseAddr("127.0.0.2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, e, _ := simple(t, false, edgeOpts{maxFlows: tc.maxFlows, maxPerSource: tc.maxPerSource})
			c1 := dialClient(t, e.addrs[0])
			c2 := dialClient(t, e.addrs[0])
			require.True(t, roundTrip(c1, []byte("one"), 3*time.Second))
			require.True(t, roundTrip(c2, []byte("two"), 3*time.Second))
			c3 := dialClient(t, e.addrs[0])
			require.False(t, roundTrip(c3, []byte("three"), 300*time.Millisecond), "a third flow must be refused")
			st := e.fwd.Stats()
			require.Positive(t, st.Refused)
			require.Equal(t, int64(2), st.Flows)
			// Established flows keep working.
			require.True(t, roundTrip(c1, []byte("one again"), 3*time.Second))
			require.True(t, roundTrip(c2, []byte("two again"), 3*time.Second))
			if tc.extra.IsValid() {
				c4, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.extra, 0)), net.UDPAddrFromAddrPort(e.addrs[0]))
				require.NoError(t, err)
				defer c4.Close()
				require.True(t, roundTrip(c4, []byte("other source"), 3*time.Second))
			}
		})
	}
}

// TestRegionRestart: the region goes away mid-flow and comes back on the
// same port; the flow's next packets reach the endpoint within 3 s with
// nothing done by the client.
func TestRegionRestart(t *testing.T) {
	f := newFleet(t, "pop-1")
	echo := startEcho(t, false)
	port := freeUDPPort(t)
	eps := []gateway.Endpoint{gatewayEndpoint("echo-1", echo.addrPort(), port, false)}
	r := f.startRegion(t, "127.0.0.1:0", eps)
	addr := r.addr()
	e := f.startEdge(t, "pop-1", addr, edgeOpts{port: port, endpoints: []string{"echo-1"}})
	c := dialClient(t, e.addrs[0])
	require.True(t, roundTrip(c, []byte("before"), 3*time.Second))

	r.stop()
	r2 := f.startRegion(t, addr, eps)
	restarted := time.Now()
	ok := false
	for i := 0; time.Since(restarted) < 3*time.Second; i++ {
		if roundTrip(c, []byte(fmt.Sprintf("after %d", i)), 50*time.Millisecond) {
			ok = true
			break
		}
	}
	require.True(t, ok, "no echo within 3 s of the region's restart")
	t.Logf("flow back %v after the restart", time.Since(restarted).Round(time.Millisecond))
	require.Equal(t, int64(1), r2.gw.UDPStats().Flows)
}

// TestTwoEdgeContinuity: a client's flow moves from edge 1 to edge 2 (as
// anycast would move it) mid-stream; the endpoint sees one source address
// and port throughout.
func TestTwoEdgeContinuity(t *testing.T) {
	f := newFleet(t, "pop-1", "pop-2")
	echo := startEcho(t, false)
	port := freeUDPPort(t)
	r := f.startRegion(t, "127.0.0.1:0", []gateway.Endpoint{gatewayEndpoint("echo-1", echo.addrPort(), port, false)})
	e1 := f.startEdge(t, "pop-1", r.addr(), edgeOpts{port: port, endpoints: []string{"echo-1"}})
	e2 := f.startEdge(t, "pop-2", r.addr(), edgeOpts{port: port, addr: netip.MustParseAddr("127.0.0.2"), endpoints: []string{"echo-1"}})

	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	send := func(to netip.AddrPort, p []byte) bool {
		if _, err := c.WriteToUDPAddrPort(p, to); err != nil {
			return false
		}
		buf := make([]byte, 2048)
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return false
			}
			if bytes.Equal(buf[:n], p) {
				require.Equal(t, to, from, "the reply leaves from the address the client sent to")
				return true
			}
		}
	}
	for i := range 10 {
		require.True(t, send(e1.addrs[0], []byte(fmt.Sprintf("via edge 1: %d", i))))
	}
	for i := range 10 {
		require.True(t, send(e2.addrs[0], []byte(fmt.Sprintf("via edge 2: %d", i))))
	}
	src := echo.sourceList()
	require.Len(t, src, 1, "the endpoint saw more than one source: %v", src)
	for _, n := range src {
		require.Equal(t, 20, n)
	}
	require.Equal(t, int64(1), r.gw.UDPStats().Flows)
}
