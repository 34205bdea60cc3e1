package backbone_test

import (
	"context"
	"crypto/tls"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/wire"
)

// rawDial dials addr with cfg from its own socket and returns why the
// connection ended (or nil if it stayed up for a second).
func rawDial(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	tr := &quic.Transport{Conn: udp}
	defer func() {
		_ = tr.Close()
		_ = udp.Close()
	}()
	ra, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, ra, cfg, &quic.Config{HandshakeIdleTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer c.CloseWithError(0, "")
	select {
	case <-c.Context().Done():
		return context.Cause(c.Context())
	case <-time.After(time.Second):
		return nil
	}
}

func TestRegionSurvivesRandomDatagrams(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	good := l.startClient(t, edgeName, r.addr, 2)
	waitLive(t, good, 2)

	pc, err := net.DialUDP("udp", nil, r.srv.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	defer pc.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		b := make([]byte, 1+rng.IntN(1400))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		switch i % 4 {
		case 0: // looks like a QUIC v1 Initial
			b = append([]byte{0xc0, 0, 0, 0, 1, 8}, b...)
		case 1: // looks like a short header packet
			b[0] = 0x40 | b[0]&0x3f
		}
		_, _ = pc.Write(b)
	}
	goodFlow(t, good)
	require.Equal(t, 2, good.Stats().Live, "garbage cost a good edge its connection")

	// A new edge connection is still accepted as well.
	late := l.startClient(t, edgeName, r.addr, 1)
	waitLive(t, late, 1)
	goodFlow(t, late)
}

func TestRegionRefusesHandshakes(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	good := l.startClient(t, edgeName, r.addr, 1)
	waitLive(t, good, 1)

	noCert := l.clientTLS(t, edgeName)
	noCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &tls.Certificate{}, nil
	}
	for _, c := range []struct {
		name   string
		cfg    *tls.Config
		reason string
	}{
		{"no certificate", noCert, "no_certificate"},
		{"unknown node", l.clientTLS(t, strangerName), "unknown_node"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := r.metrics.HandshakeRefused()[c.reason]
			err := rawDial(t, r.addr, c.cfg)
			require.Error(t, err, "handshake was not refused")
			var te *quic.TransportError
			require.ErrorAs(t, err, &te)
			require.True(t, te.ErrorCode.IsCryptoError(), "refusal is a TLS alert, got %v", err)
			eventually(t, time.Second, func() bool { return r.metrics.HandshakeRefused()[c.reason] == before+1 },
				"refusal not counted")
			goodFlow(t, good)
		})
	}
	// A refused edge never gets a stream served.
	require.Len(t, r.rec.live(), 1)
}

// TestRegionSurvivesReplayedPackets: every packet an edge sent — its
// handshakes, control streams and a flow — is captured on the way and
// replayed to the region twice: once from the edge's own address and port
// (a replay on the path), once from a new one (an attacker elsewhere).
// The region answers no replay with a new connection or stream, and the
// edge's own connections and a new one keep working.
func TestRegionSurvivesReplayedPackets(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	r.gw.SetHealth([]wire.EndpointHealth{{ID: endpointID, Healthy: true}})
	rl := startRelay(t, r.addr)
	rl.record.Store(true)
	good := l.startClient(t, edgeName, rl.addr(), 2)
	waitLive(t, good, 2)
	goodFlow(t, good)
	rl.record.Store(false)
	rl.mu.Lock()
	captured := slices.Clone(rl.recorded)
	var path *net.UDPConn
	for _, up := range rl.ups {
		path = up
	}
	rl.mu.Unlock()
	require.NotEmpty(t, captured)
	conns := r.rec.live()

	other, err := net.DialUDP("udp", nil, r.srv.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	defer other.Close()
	for _, p := range captured {
		_, _ = path.Write(p)
		_, _ = other.Write(p)
	}
	goodFlow(t, good)
	require.Equal(t, 2, good.Stats().Live, "a replay cost the edge a connection")
	for c := range r.rec.live() {
		require.Contains(t, conns, c, "a replayed handshake made a connection")
	}

	late := l.startClient(t, edgeName, r.addr, 1)
	waitLive(t, late, 1)
	goodFlow(t, late)
}
