//go:build linux

package backbone_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/internal/wanem"
	"github.com/anyedge/anyedge/internal/wanlab"
)

// TestStripedFlowThroughTheEmulator runs the backbone between the PoP and
// region namespaces of the WAN lab, over an emulated 40 ms path that loses
// 1 % of the packets each way, and moves 4 MiB each way through a striped
// flow to an echo endpoint: every byte arrives, in order, over lanes on
// several connections. (The speed of such a flow is a benchmark: make
// bench-wan.) Needs root.
func TestStripedFlowThroughTheEmulator(t *testing.T) {
	if err := wanlab.Available(); err != nil {
		t.Skip(err)
	}
	lab, err := wanlab.Up(wanlab.Config{
		Name:     fmt.Sprintf("bb%d", os.Getpid()),
		Realtime: true,
		Backbone: wanlab.Symmetric(wanem.Params{Delay: 20 * time.Millisecond, Loss: 0.01, RateBits: 200_000_000, Seed: 5}),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, lab.Close()) })

	l := newLab(t)
	echo := startEcho(t) // on 127.0.0.1 of the test's own namespace: the gateway dials from there
	gw := gateway.New(gateway.Config{Endpoints: []gateway.Endpoint{{
		ID: endpointID, Host: "127.0.0.1", Port: echo.Port(), ListenerPorts: [][2]uint16{{listenerPort, listenerPort}},
	}}})
	tlsConf := pki.ServerConfig(l.store(t, regionName), func(n string) bool { return n == edgeName }, nil)
	var srv *backbone.Server
	require.NoError(t, lab.Do(wanlab.Region, func() (err error) {
		srv, err = backbone.Listen(backbone.ServerConfig{Listen: wanlab.RegionBackbone.String() + ":0", TLS: tlsConf}, gw)
		return err
	}))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.NoError(t, <-done)
	})

	c, err := backbone.NewClient(backbone.ClientConfig{
		Region: regionName, Addr: srv.Addr().String(), Connections: 4,
		Stripe: backbone.StripeConfig{Lanes: 4},
		TLS:    l.clientTLS(t, edgeName), Hello: backbone.Hello(edgeName, "test"),
		ListenUDP: func() (u *net.UDPConn, err error) {
			err = lab.Do(wanlab.PoP, func() error {
				u, err = net.ListenUDP("udp", nil)
				return err
			})
			return u, err
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cdone := make(chan error, 1)
	go func() { cdone <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-cdone)
	})
	waitLive(t, c, 4)
	eventually(t, 10*time.Second, c.CanStripe, "the region never offered striping")
	regions := backbone.Regions{regionName: c}
	s, err := regions.OpenFlow(context.Background(), regionName, tcpHeader(), nil, 10*time.Second)
	require.NoError(t, err)
	defer s.Release()
	require.True(t, s.Striped(), "a 40 ms backbone is past stripe_min_rtt")
	data := make([]byte, 4<<20)
	_, _ = rand.Read(data)
	echoBulk(t, s, nil, data)
	st := lab.Stats(wanlab.Backbone)
	t.Logf("backbone: %d packets, %d lost (%.2f %%)", st.In, st.Lost, 100*float64(st.Lost)/float64(max(st.In, 1)))
	require.NotZero(t, st.Lost, "the emulator lost packets on the way")
}
