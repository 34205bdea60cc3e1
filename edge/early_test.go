package edge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/router"
)

// inspectingRegion is a region that, before answering a flow, waits up to
// wait for the first bytes the edge sends after the header and records
// them; then it answers OK, dials target, and relays. What it records is
// exactly what travelled before the answer.
type inspectingRegion struct {
	target string
	wait   time.Duration
	// records receives one entry per flow: the bytes seen before the answer.
	records chan []byte
	// refuse, while positive, makes that many flows get a refusal (dial
	// refused) after their early bytes are recorded: nothing reaches the
	// endpoint.
	refuse atomic.Int32
}

func (r *inspectingRegion) ServeStream(ctx context.Context, _ backbone.Peer, s *quic.Stream) {
	h, err := wire.ReadHeader(s)
	if err != nil {
		s.CancelRead(wire.StreamReset)
		s.CancelWrite(wire.StreamReset)
		return
	}
	if h.Kind == wire.KindControl {
		_, _ = io.ReadFull(s, make([]byte, 1))
		_ = wire.WriteMsg(s, wire.MsgHealth, wire.Health{Full: true})
		<-ctx.Done()
		s.CancelRead(wire.StreamShutdown)
		s.CancelWrite(wire.StreamShutdown)
		return
	}
	// Read what arrives before the answer: until wait passes without more.
	var early []byte
	buf := make([]byte, 64<<10)
	for {
		_ = s.SetReadDeadline(time.Now().Add(r.wait))
		n, err := s.Read(buf)
		early = append(early, buf[:n]...)
		if err != nil {
			break
		}
	}
	_ = s.SetReadDeadline(time.Time{})
	r.records <- early
	if r.refuse.Add(-1) >= 0 {
		_, _ = s.Write([]byte{byte(wire.CodeDialRefused)})
		s.CancelRead(wire.StreamReset)
		_ = s.Close()
		return
	}
	c, err := net.Dial("tcp", r.target)
	if err != nil {
		_, _ = s.Write([]byte{byte(wire.CodeDialRefused)})
		s.CancelRead(wire.StreamReset)
		_ = s.Close()
		return
	}
	defer c.Close()
	_, _ = s.Write([]byte{byte(wire.CodeOK)})
	_, _ = c.Write(early)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(c, s)
		_ = c.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(s, c)
	_ = s.Close()
	<-done
}

// startInspected runs an edge whose only region is an inspectingRegion in
// front of target, with the given early-data mode.
func startInspected(t *testing.T, mode edge.EarlyData, target string, wait time.Duration) (addr string, records chan []byte, e *edge.Edge) {
	t.Helper()
	addr, region, e := startInspectedRegion(t, mode, target, wait)
	return addr, region.records, e
}

// startInspectedRegion is startInspected returning the region itself; the
// listener routes to two endpoint IDs, so a refused flow has a retry.
func startInspectedRegion(t *testing.T, mode edge.EarlyData, target string, wait time.Duration) (addr string, region *inspectingRegion, e *edge.Edge) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	region = &inspectingRegion{target: target, wait: wait, records: make(chan []byte, 16)}
	cl, _ := regionClient(ctx, t, &wg, "pop", "region", region, 0)
	port := freePort(t)
	e, err := edge.New(edge.Config{
		Listeners: []edge.Listener{{
			Protocol: "tcp", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Ports:     []edge.PortRange{{From: port, To: port}},
			EarlyData: mode,
			Route: router.Listener{Key: "early", Groups: []router.Group{
				{Region: "region", TrafficDial: 100, Endpoints: []router.Endpoint{{ID: "ep-1", Weight: 1}, {ID: "ep-2", Weight: 1}}},
			}},
		}},
		HedgeDelay: time.Minute, // the inspecting region's wait must not look slow
	}, edge.Regions{"region": cl})
	require.NoError(t, err)
	require.NoError(t, e.Listen())
	wg.Go(func() { _ = e.Run(ctx) })
	waitReachable(t, cl)
	return e.Addrs()[0].String(), region, e
}

// tlsEchoServer is a TLS 1.3 server that echoes; it returns its address
// and a client config that trusts it.
func tlsEchoServer(t testing.TB) (string, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"endpoint.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS13,
	})
	require.NoError(t, err)
	serveEach(t, ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "endpoint.test", MinVersion: tls.VersionTLS13}
}

// TestEarlyDataTLS: with early_data tls, a TLS client's ClientHello reaches
// the region with the header, before the answer, and nothing else does; the
// handshake and the echo through it complete.
func TestEarlyDataTLS(t *testing.T) {
	target, ccfg := tlsEchoServer(t)
	addr, records, e := startInspected(t, edge.EarlyTLS, target, 300*time.Millisecond)

	c, err := tls.Dial("tcp", addr, ccfg)
	require.NoError(t, err)
	defer c.Close()
	msg := []byte("hello through a pipelined handshake")
	_, err = c.Write(msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, msg, got)

	early := <-records
	require.GreaterOrEqual(t, len(early), 5+4)
	require.EqualValues(t, 22, early[0], "a handshake record")
	require.EqualValues(t, 1, early[5], "holding a ClientHello")
	require.Len(t, early, 5+int(binary.BigEndian.Uint16(early[3:5])), "exactly the ClientHello record")
	require.EqualValues(t, 1, e.Stats().EarlyData)
}

// TestEarlyDataTLSModeLeavesPlaintextAlone: a client that does not speak
// TLS sends nothing before the answer in tls mode, and still works.
func TestEarlyDataTLSModeLeavesPlaintextAlone(t *testing.T) {
	addr, records, e := startInspected(t, edge.EarlyTLS, echoServer(t), 200*time.Millisecond)
	require.NoError(t, echoOnce(addr, 4096))
	require.Empty(t, <-records)
	require.EqualValues(t, 0, e.Stats().EarlyData)
}

// TestEarlyDataOff: nothing travels before the answer.
func TestEarlyDataOff(t *testing.T) {
	target, ccfg := tlsEchoServer(t)
	addr, records, e := startInspected(t, edge.EarlyOff, target, 200*time.Millisecond)
	c, err := tls.Dial("tcp", addr, ccfg)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.Empty(t, <-records)
	require.EqualValues(t, 0, e.Stats().EarlyData)
}

// TestEarlyDataAlways: whatever the client sends first travels early, and
// the rest follows in order once the region has answered.
func TestEarlyDataAlways(t *testing.T) {
	addr, records, e := startInspected(t, edge.EarlyAlways, echoServer(t), 300*time.Millisecond)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("GET / HTTP/1.1\r\n"))
	require.NoError(t, err)
	require.Equal(t, "GET / HTTP/1.1\r\n", string(<-records))
	_, err = c.Write([]byte("Host: x\r\n\r\n"))
	require.NoError(t, err)
	got := make([]byte, len("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", string(got))
	require.EqualValues(t, 1, e.Stats().EarlyData)
}

// TestEarlyDataHedgeCarriesTheBytes: the preferred region never answers;
// the hedge to the other region carries the early bytes, and the echo
// (which checks a SHA-256 of everything it received) sees each byte once.
func TestEarlyDataHedgeCarriesTheBytes(t *testing.T) {
	e, port := startHedgeLab(t, edge.EarlyAlways)
	require.NoError(t, echoOnce(net.JoinHostPort("127.0.0.1", itoa(port)), 64<<10))
	require.EqualValues(t, 1, e.Stats().Hedges)
	require.EqualValues(t, 1, e.Stats().EarlyData)
	require.EqualValues(t, 0, failed(e))
}

// TestEarlyDataClientResetDuringSetup: a client that resets while its flow
// waits for a silent region (having sent half a ClientHello) costs the
// edge nothing: the attempt is cancelled at once, not after the hedge.
func TestEarlyDataClientResetDuringSetup(t *testing.T) {
	addr, records, e := startInspected(t, edge.EarlyTLS, echoServer(t), 2*time.Second)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = c.Write([]byte{22, 3, 1, 2, 0, 1, 0, 1})
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, c.(*net.TCPConn).SetLinger(0))
	require.NoError(t, c.Close())
	// The flow ends as the client's abort (not as a hedge's or a timeout's
	// failure); how soon is not for a busy machine's test to judge.
	deadline := time.Now().Add(30 * time.Second)
	for e.Stats().Ended(flow.ClientAborted) == 0 {
		require.True(t, time.Now().Before(deadline), "the edge did not give up on the reset client")
		time.Sleep(5 * time.Millisecond)
	}
	// The region saw a cancelled stream: nothing travelled early (the
	// record was incomplete), and its read ended with the reset.
	select {
	case early := <-records:
		require.Empty(t, early)
	case <-time.After(3 * time.Second):
		t.Fatal("the region's stream was not ended")
	}
	require.Zero(t, failed(e), "a client's reset is not a failed flow")
}

// TestEarlyDataClientEOF: a client that sends its request and half-closes
// before the answer still gets the full reply.
func TestEarlyDataClientEOF(t *testing.T) {
	addr, _, _ := startInspected(t, edge.EarlyAlways, echoServer(t), 100*time.Millisecond)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		require.NoError(t, err)
	}
	require.Equal(t, "ping", string(got[:4]), "echo, then the echo server's SHA-256")
	require.Len(t, got, 4+32)
}

// BenchmarkTLSConnect: a TLS 1.3 handshake and a 1-byte echo on a new
// connection, direct and through anyedge (edge, QUIC backbone and region in
// this process) with early data off and with the default tls mode, side by
// side in one run; then the same through a region 20 ms away (every
// backbone packet delayed 10 ms each way), where the round trip early data
// saves is visible.
func BenchmarkTLSConnect(b *testing.B) {
	target, ccfg := tlsEchoServer(b)
	for _, rtt := range []time.Duration{0, 20 * time.Millisecond} {
		eps := map[string]string{"tls": target}
		off := startLabWith(b, eps, labOpts{early: edge.EarlyOff, backboneDelay: rtt / 2})
		on := startLabWith(b, eps, labOpts{early: edge.EarlyTLS, backboneDelay: rtt / 2})
		paths := []struct{ name, addr string }{{"early-off", off.edgeAddr}, {"early-tls", on.edgeAddr}}
		if rtt == 0 {
			paths = append([]struct{ name, addr string }{{"direct", target}}, paths...)
		}
		for _, p := range paths {
			b.Run(fmt.Sprintf("rtt=%s/%s", rtt, p.name), func(b *testing.B) {
				for b.Loop() {
					if err := tlsPing(p.addr, ccfg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		if on.edge.Stats().EarlyData == 0 || off.edge.Stats().EarlyData != 0 {
			b.Fatalf("early-data flows: off %d, tls %d", off.edge.Stats().EarlyData, on.edge.Stats().EarlyData)
		}
	}
}

// tlsPing connects with TLS, echoes one byte and closes.
func tlsPing(addr string, cfg *tls.Config) error {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, 1))
	return err
}

// TestEarlyDataBounded: a client that sends more than MaxEarlyData before
// the answer has exactly MaxEarlyData travel early; the rest waits in the
// socket and follows, in order, once the region has answered.
func TestEarlyDataBounded(t *testing.T) {
	addr, records, _ := startInspected(t, edge.EarlyAlways, echoServer(t), 300*time.Millisecond)
	const size = 256 << 10
	done := make(chan error, 1)
	go func() { done <- echoOnce(addr, size) }() // checks every byte and the SHA-256
	early := <-records
	require.Len(t, early, edge.MaxEarlyData)
	require.NoError(t, <-done)
}

// TestEarlyDataRetryAfterRefusal: the first attempt carries the early
// bytes and is refused; the retry carries them again, and the endpoint
// (whose SHA-256 echo checks every byte) receives them exactly once.
func TestEarlyDataRetryAfterRefusal(t *testing.T) {
	addr, region, e := startInspectedRegion(t, edge.EarlyAlways, echoServer(t), 200*time.Millisecond)
	region.refuse.Store(1)
	require.NoError(t, echoOnce(addr, 8<<10))
	first, second := <-region.records, <-region.records
	require.NotEmpty(t, first, "the refused attempt carried early bytes")
	require.Equal(t, first, second, "the retry carried the same early bytes")
	require.EqualValues(t, 1, e.Stats().Retries)
	require.EqualValues(t, 0, e.Stats().Hedges)
	require.EqualValues(t, 0, failed(e))
}
