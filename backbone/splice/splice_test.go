package splice_test

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/backbone/splice"
	"github.com/anyedge/anyedge/backbone/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair is one splice under test: user ⇄ TCP ⇄ Join ⇄ QUIC stream ⇄ peer.
type pair struct {
	user   *net.TCPConn
	peer   *quic.Stream
	result chan splice.Result
}

// quicStreams returns both ends of one QUIC stream over loopback.
func quicStreams(t *testing.T) (local, remote *quic.Stream) {
	t.Helper()
	p, err := pki.NewEphemeral("a", "b")
	require.NoError(t, err)
	sa, err := p.Store("a", nil)
	require.NoError(t, err)
	sb, err := p.Store("b", nil)
	require.NoError(t, err)
	qc := &quic.Config{MaxIdleTimeout: 10 * time.Second}
	transport := func() *quic.Transport {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		tr := &quic.Transport{Conn: udp}
		t.Cleanup(func() { _ = tr.Close(); _ = udp.Close() })
		return tr
	}
	ln, err := transport().Listen(pki.ServerConfig(sb, func(string) bool { return true }, nil), qc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cc, err := transport().Dial(ctx, ln.Addr().(*net.UDPAddr), pki.ClientConfig(sa, "b"), qc)
	require.NoError(t, err)
	sc, err := ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cc.CloseWithError(0, "")
		_ = sc.CloseWithError(0, "")
		_ = ln.Close()
	})
	local, err = cc.OpenStream()
	require.NoError(t, err)
	_, err = local.Write([]byte{0}) // make the stream known to the peer
	require.NoError(t, err)
	remote, err = sc.AcceptStream(ctx)
	require.NoError(t, err)
	_, err = io.ReadFull(remote, make([]byte, 1))
	require.NoError(t, err)
	_ = remote.SetDeadline(time.Now().Add(10 * time.Second))
	return local, remote
}

func startPair(t *testing.T, idle time.Duration) *pair {
	t.Helper()
	local, remote := quicStreams(t)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer ln.Close()
	user, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	require.NoError(t, err)
	t.Cleanup(func() { _ = user.Close() })
	_ = user.SetDeadline(time.Now().Add(10 * time.Second))
	inner, err := ln.AcceptTCP()
	require.NoError(t, err)
	p := &pair{user: user, peer: remote, result: make(chan splice.Result, 1)}
	go func() { p.result <- splice.Join(inner, local, idle) }()
	t.Cleanup(func() {
		remote.CancelRead(0)
		remote.CancelWrite(0)
		_ = user.Close()
		<-p.result
	})
	return p
}

func (p *pair) done(t *testing.T) splice.Result {
	t.Helper()
	select {
	case r := <-p.result:
		p.result <- r // for the cleanup
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Join did not return")
		return splice.Result{}
	}
}

func TestHalfCloseBothWays(t *testing.T) {
	p := startPair(t, 0)
	_, err := p.user.Write([]byte("request"))
	require.NoError(t, err)
	require.NoError(t, p.user.CloseWrite())
	got, err := io.ReadAll(p.peer)
	require.NoError(t, err, "FIN must arrive as a FIN")
	require.Equal(t, "request", string(got))

	_, err = p.peer.Write([]byte("response"))
	require.NoError(t, err)
	require.NoError(t, p.peer.Close())
	got, err = io.ReadAll(p.user)
	require.NoError(t, err)
	require.Equal(t, "response", string(got))
	require.Equal(t, splice.Result{Up: 7, Down: 8, FirstFIN: splice.SideTCP}, p.done(t))
}

func TestHalfCloseFromStreamFirst(t *testing.T) {
	p := startPair(t, 0)
	_, err := p.peer.Write([]byte("banner"))
	require.NoError(t, err)
	require.NoError(t, p.peer.Close())
	got, err := io.ReadAll(p.user)
	require.NoError(t, err)
	require.Equal(t, "banner", string(got))
	_, err = p.user.Write([]byte("still talking"))
	require.NoError(t, err)
	require.NoError(t, p.user.CloseWrite())
	got, err = io.ReadAll(p.peer)
	require.NoError(t, err)
	require.Equal(t, "still talking", string(got))
	r := p.done(t)
	require.False(t, r.Reset)
	require.Equal(t, splice.SideStream, r.FirstFIN)
}

func TestResetFromTCP(t *testing.T) {
	p := startPair(t, 0)
	_, err := p.user.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(p.peer, make([]byte, 1))
	require.NoError(t, err)
	require.NoError(t, p.user.SetLinger(0))
	require.NoError(t, p.user.Close())
	_, err = io.ReadAll(p.peer)
	var se *quic.StreamError
	require.ErrorAs(t, err, &se)
	require.Equal(t, wire.StreamReset, se.ErrorCode)
	r := p.done(t)
	require.True(t, r.Reset)
	require.Equal(t, splice.SideTCP, r.ResetBy)
}

func TestResetFromStream(t *testing.T) {
	p := startPair(t, 0)
	p.peer.CancelWrite(wire.StreamReset)
	_, err := io.ReadAll(p.user)
	require.ErrorIs(t, err, syscall.ECONNRESET)
	r := p.done(t)
	require.True(t, r.Reset)
	require.Equal(t, splice.SideStream, r.ResetBy)
	var se *quic.StreamError
	require.ErrorAs(t, r.ResetErr, &se, "the stream's error is kept")
}

func TestIdleCut(t *testing.T) {
	// Writes every idle/10 keep the flow open; a machine that stalls the
	// test for nine tenths of idle would cut it early, so idle is long (a
	// 1 s idle with writes every 200 ms was cut once with two test suites
	// running at once on two cores).
	const idle = 2 * time.Second
	p := startPair(t, idle)
	start := time.Now()
	// Traffic in either direction keeps the flow open.
	for i := range 11 {
		if i > 0 {
			<-time.After(idle / 10)
		}
		if i%2 == 0 {
			_, err := p.user.Write([]byte("u"))
			require.NoError(t, err)
			_, err = io.ReadFull(p.peer, make([]byte, 1))
			require.NoError(t, err)
		} else {
			_, err := p.peer.Write([]byte("d"))
			require.NoError(t, err)
			_, err = io.ReadFull(p.user, make([]byte, 1))
			require.NoError(t, err)
		}
	}
	require.Greater(t, time.Since(start), idle)
	silent := time.Now()
	_, err := io.ReadAll(p.user)
	require.ErrorIs(t, err, syscall.ECONNRESET)
	_, err = io.ReadAll(p.peer)
	var se *quic.StreamError
	require.ErrorAs(t, err, &se)
	require.Equal(t, wire.StreamIdle, se.ErrorCode)
	r := p.done(t)
	require.True(t, r.Idle)
	require.False(t, r.Reset)
	require.Equal(t, splice.SideNone, r.ResetBy)
	// Never cut before idle (ReadAll above would hang if it were never cut).
	require.GreaterOrEqual(t, time.Since(silent), idle*9/10)
}
