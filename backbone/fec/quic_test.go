package fec

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/internal/testcert"
)

// quicPair is a quic-go client and server, each over a lossy socket
// wrapped in a Conn, with one connection between them.
type quicPair struct {
	client, server         *Conn
	closs, sloss           *lossy
	cconn, sconn           *quic.Conn
	ctr, str               *quic.Transport
	clientAddr, serverAddr *net.UDPAddr
}

func newQUICPair(t *testing.T) *quicPair {
	t.Helper()
	ca := testcert.NewCA(t)
	leaf := ca.Issue(t, "region", testcert.Leaf{Names: []string{"region"}})
	ua, ub := listen(t), listen(t)
	p := &quicPair{closs: &lossy{UDPConn: ua}, sloss: &lossy{UDPConn: ub},
		clientAddr: ua.LocalAddr().(*net.UDPAddr), serverAddr: ub.LocalAddr().(*net.UDPAddr)}
	p.client, p.server = NewConn(p.closs, Config{}), NewConn(p.sloss, Config{})
	p.ctr, p.str = &quic.Transport{Conn: p.client}, &quic.Transport{Conn: p.server}
	qconf := &quic.Config{MaxIdleTimeout: 10 * time.Second}
	ln, err := p.str.Listen(&tls.Config{Certificates: []tls.Certificate{leaf.Cert}, NextProtos: []string{"t"}}, qconf)
	require.NoError(t, err)
	t.Cleanup(func() {
		if p.cconn != nil {
			_ = p.cconn.CloseWithError(0, "")
		}
		_ = ln.Close()
		require.NoError(t, p.ctr.Close())
		require.NoError(t, p.str.Close())
		require.NoError(t, p.client.Close())
		require.NoError(t, p.server.Close())
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	p.cconn, err = p.ctr.Dial(ctx, p.serverAddr,
		&tls.Config{RootCAs: ca.Pool(), ServerName: "region", NextProtos: []string{"t"}}, qconf)
	require.NoError(t, err)
	p.sconn = <-accepted
	require.NotNil(t, p.sconn)
	return p
}

// download moves n random bytes from the server to the client on one
// stream and checks them.
func (p *quicPair) download(t *testing.T, n int) {
	t.Helper()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		s, err := p.sconn.OpenStreamSync(ctx)
		if err == nil {
			_, err = s.Write(data)
			if cerr := s.Close(); err == nil {
				err = cerr
			}
		}
		errc <- err
	}()
	s, err := p.cconn.AcceptStream(ctx)
	require.NoError(t, err)
	got, err := io.ReadAll(s)
	require.NoError(t, err)
	require.NoError(t, <-errc)
	require.True(t, bytes.Equal(data, got), "the stream's bytes arrived changed")
}

// TestQUICAlwaysSetsTheFixedBit checks what the framing relies on: no
// datagram quic-go sends (handshake, data, acknowledgements, close) has
// both high bits of its first byte clear, so none is taken for an FEC
// frame. Neither side is enabled: every datagram is quic-go's.
func TestQUICAlwaysSetsTheFixedBit(t *testing.T) {
	var frames int
	fixed := func(b []byte) bool { frames++; return false }
	p := newQUICPair(t)
	p.closs.mu.Lock()
	p.closs.dropFrame = fixed
	p.closs.mu.Unlock()
	p.sloss.mu.Lock()
	p.sloss.dropFrame = fixed
	p.sloss.mu.Unlock()
	p.download(t, 1<<20)
	t.Logf("no FEC, no loss: quic-go declared %d lost", p.sconn.ConnectionStats().PacketsLost)
	require.NoError(t, p.cconn.CloseWithError(0, "done"))
	<-p.sconn.Context().Done()
	p.closs.mu.Lock()
	defer p.closs.mu.Unlock()
	p.sloss.mu.Lock()
	defer p.sloss.mu.Unlock()
	require.Zero(t, frames, "a datagram of quic-go's looked like an FEC frame")
	require.Greater(t, p.closs.data+p.sloss.data, 700)
}

// TestQUICOverFECRecoversLoss loses 2 % of the server's datagrams, one
// per group at most: the client rebuilds every one and the stream's bytes
// arrive intact. (How many packets quic-go then still declares lost
// depends on the path's RTT against the flush delay: on loopback, a tail
// waits 1 ms for its parity, as long as quic-go's time threshold there;
// TestFECThroughTheEmulator in backbone measures it on a long path.)
func TestQUICOverFECRecoversLoss(t *testing.T) {
	p := newQUICPair(t)
	require.True(t, p.server.Enable(p.sconn.RemoteAddr()))
	require.True(t, p.client.Enable(p.cconn.RemoteAddr()))
	p.sloss.mu.Lock()
	p.sloss.drop = func(i int) bool { return i%50 == 25 }
	p.sloss.mu.Unlock()
	p.download(t, 4<<20)
	// The datagrams i < data with i%50 == 25. The server goes on sending
	// (acknowledgements) after the download; a loss among its last
	// datagrams is rebuilt when their group's parity follows, within the
	// flush delay.
	lost := func() uint64 {
		p.sloss.mu.Lock()
		defer p.sloss.mu.Unlock()
		return uint64(p.sloss.data+24) / 50
	}
	require.Eventually(t, func() bool { return p.client.Stats().Recovered >= lost() }, 20*time.Second, time.Millisecond,
		"the client rebuilt %d of %d", p.client.Stats().Recovered, lost())
	st := p.client.Stats()
	t.Logf("the path lost %d; rebuilt %d, unrecovered %d, mismatched %d; quic-go declared %d lost",
		lost(), st.Recovered, st.Unrecovered, st.Mismatched, p.sconn.ConnectionStats().PacketsLost)
	require.Zero(t, st.Unrecovered)
}
