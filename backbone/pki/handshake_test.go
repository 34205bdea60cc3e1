package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// rejection is one onReject call.
type rejection struct {
	remote string
	err    error
}

// accepted is what the server saw of one established connection.
type accepted struct {
	peer      string
	serial    *big.Int
	didResume bool
}

// testServer is a QUIC backbone server on 127.0.0.1:0.
type testServer struct {
	addr     string
	rejects  chan rejection
	accepted chan accepted
}

var quicConf = &quic.Config{HandshakeIdleTimeout: 2 * time.Second, MaxIdleTimeout: 5 * time.Second}

// startServer runs a server for store that allows the names for which allow
// is true; it is closed at the end of the test.
func startServer(t *testing.T, store *Store, allow func(string) bool) *testServer {
	t.Helper()
	ts := &testServer{rejects: make(chan rejection, 16), accepted: make(chan accepted, 16)}
	cfg := ServerConfig(store, allow, func(remote string, err error) {
		ts.rejects <- rejection{remote, err}
	})
	tr := newTransport(t)
	ln, err := tr.Listen(cfg, quicConf)
	require.NoError(t, err)
	ts.addr = ln.Addr().String()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns []*quic.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			st := c.ConnectionState().TLS
			name, err := PeerName(st)
			if err != nil {
				t.Errorf("PeerName on an accepted connection: %v", err)
			}
			ts.accepted <- accepted{peer: name, serial: st.PeerCertificates[0].SerialNumber, didResume: st.DidResume}
		}
	}()
	t.Cleanup(func() {
		require.NoError(t, ln.Close())
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.CloseWithError(0, "test done")
		}
	})
	return ts
}

// newTransport returns a QUIC transport on 127.0.0.1:0. Closing the
// transport at the end of the test stops its goroutines at once, which
// quic.ListenAddr and quic.DialAddr leave to timers.
func newTransport(t *testing.T) *quic.Transport {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() {
		require.NoError(t, tr.Close())
		require.NoError(t, udp.Close())
	})
	return tr
}

// dial connects to addr from a fresh transport.
func dial(t *testing.T, addr string, cfg *tls.Config) (*quic.Conn, error) {
	t.Helper()
	udpAddr, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	tr := newTransport(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, udpAddr, cfg, quicConf)
	if err == nil {
		t.Cleanup(func() { _ = c.CloseWithError(0, "test done") })
	}
	return c, err
}

// dialRefused dials and returns why the connection failed. In TLS 1.3 the
// client finishes its side of the handshake before the server has checked the
// client certificate, so a refusal by the server can arrive just after
// DialAddr returned: then it is the cause the connection closes with.
func dialRefused(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	c, err := dial(t, addr, cfg)
	if err != nil {
		return err
	}
	select {
	case <-c.Context().Done():
		return context.Cause(c.Context())
	case <-time.After(5 * time.Second):
		t.Fatal("connection was not refused")
		return nil
	}
}

func (ts *testServer) nextAccepted(t *testing.T) accepted {
	t.Helper()
	select {
	case a := <-ts.accepted:
		return a
	case <-time.After(5 * time.Second):
		t.Fatal("server accepted no connection")
		return accepted{}
	}
}

func (ts *testServer) nextReject(t *testing.T) rejection {
	t.Helper()
	select {
	case r := <-ts.rejects:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("onReject was not called")
		return rejection{}
	}
}

// fixture is a PKI directory with a region and a pop.
type fixture struct {
	dir         string
	region, pop *Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	require.NoError(t, InitCA(dir, DefaultCAValidity, now))
	for _, n := range []string{"region1", "pop1"} {
		require.NoError(t, Issue(dir, n, DefaultNodeValidity, now))
	}
	f := &fixture{dir: dir}
	var err error
	f.region, err = OpenStore(dir, "region1", nil)
	require.NoError(t, err)
	f.pop, err = OpenStore(dir, "pop1", nil)
	require.NoError(t, err)
	return f
}

func allowNames(names ...string) func(string) bool {
	return func(n string) bool {
		for _, m := range names {
			if n == m {
				return true
			}
		}
		return false
	}
}

// waitTicket waits until cfg's session cache holds a ticket for serverName.
func waitTicket(t *testing.T, cfg *tls.Config, serverName string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, ok := cfg.ClientSessionCache.Get(serverName)
		return ok
	}, 5*time.Second, 5*time.Millisecond, "no session ticket arrived")
}

func TestHandshakeAndResumption(t *testing.T) {
	f := newFixture(t)
	ts := startServer(t, f.region, allowNames("pop1"))
	cfg := ClientConfig(f.pop, "region1")

	c, err := dial(t, ts.addr, cfg)
	require.NoError(t, err)
	st := c.ConnectionState()
	require.Equal(t, ALPN, st.TLS.NegotiatedProtocol)
	require.Equal(t, uint16(tls.VersionTLS13), st.TLS.Version)
	require.False(t, st.TLS.DidResume)
	name, err := PeerName(st.TLS)
	require.NoError(t, err)
	require.Equal(t, "region1", name)
	a := ts.nextAccepted(t)
	require.Equal(t, "pop1", a.peer)
	require.Equal(t, f.pop.Leaf().SerialNumber, a.serial)
	require.False(t, a.didResume)

	waitTicket(t, cfg, "region1")
	c2, err := dial(t, ts.addr, cfg)
	require.NoError(t, err)
	require.True(t, c2.ConnectionState().TLS.DidResume, "second connection resumes")
	require.False(t, c2.ConnectionState().Used0RTT, "no early data")
	a = ts.nextAccepted(t)
	require.Equal(t, "pop1", a.peer, "the resumed connection still names the pop")
	require.True(t, a.didResume)
}

func TestResumptionRechecksAllowList(t *testing.T) {
	f := newFixture(t)
	var allowed atomic.Bool
	allowed.Store(true)
	ts := startServer(t, f.region, func(n string) bool { return allowed.Load() && n == "pop1" })
	cfg := ClientConfig(f.pop, "region1")
	_, err := dial(t, ts.addr, cfg)
	require.NoError(t, err)
	ts.nextAccepted(t)
	waitTicket(t, cfg, "region1")

	allowed.Store(false) // pop1 removed from the topology
	require.Error(t, dialRefused(t, ts.addr, cfg))
	r := ts.nextReject(t)
	require.ErrorIs(t, r.err, ErrUnknownNode)
	require.ErrorContains(t, r.err, `unknown node name "pop1"`)
	_, ok := cfg.ClientSessionCache.Get("region1")
	require.False(t, ok, "the refused handshake offered the ticket, and the client dropped it")
}

// selfSigned returns a self-signed certificate for name.
func selfSigned(t *testing.T, name string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestServerRefuses(t *testing.T) {
	f := newFixture(t)
	ts := startServer(t, f.region, allowNames("pop1", "pop2"))

	other := t.TempDir()
	require.NoError(t, InitCA(other, time.Hour, time.Now()))
	require.NoError(t, Issue(other, "pop1", time.Hour, time.Now()))
	otherCA, err := OpenStore(other, "pop1", nil)
	require.NoError(t, err)

	// pop2 was issued two years ago for one year.
	require.NoError(t, Issue(f.dir, "pop2", DefaultNodeValidity, time.Now().Add(-2*DefaultNodeValidity)))
	expired, err := OpenStore(f.dir, "pop2", nil) // loads, with a warning
	require.NoError(t, err)

	require.NoError(t, Issue(f.dir, "pop9", time.Hour, time.Now()))
	stranger, err := OpenStore(f.dir, "pop9", nil)
	require.NoError(t, err)

	withCert := func(c *tls.Certificate) *tls.Config {
		cfg := ClientConfig(f.pop, "region1")
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }
		return cfg
	}
	for _, tc := range []struct {
		name   string
		cfg    *tls.Config
		reason error
		text   string
	}{
		{"no certificate", withCert(&tls.Certificate{}), ErrNoCertificate, "no certificate presented"},
		{"other CA", withCert(otherCA.Certificate()), ErrUnknownAuthority, "unknown authority"},
		{"self-signed", withCert(selfSigned(t, "pop1")), ErrSelfSigned, "self-signed"},
		{"expired", ClientConfig(expired, "region1"), ErrExpired, "expired"},
		{"node not allowed", ClientConfig(stranger, "region1"), ErrUnknownNode, `unknown node name "pop9"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := dialRefused(t, ts.addr, tc.cfg)
			var terr *quic.TransportError
			require.ErrorAs(t, err, &terr)
			require.True(t, terr.Remote, "closed by the server: %v", err)
			r := ts.nextReject(t)
			require.ErrorIs(t, r.err, tc.reason)
			require.ErrorContains(t, r.err, tc.text)
			host, _, err := net.SplitHostPort(r.remote)
			require.NoError(t, err, "remote %q", r.remote)
			require.Equal(t, "127.0.0.1", host)
			select {
			case a := <-ts.accepted:
				t.Fatalf("server accepted %+v", a)
			default:
			}
		})
	}
}

func TestClientRefusesWrongServerName(t *testing.T) {
	f := newFixture(t)
	ts := startServer(t, f.region, allowNames("pop1"))
	_, err := dial(t, ts.addr, ClientConfig(f.pop, "region2"))
	require.ErrorIs(t, ClientError(err), ErrWrongName)
	require.ErrorContains(t, err, `certificate is valid for region1, not region2`)

	// A pop certificate presented as a server is refused for a region name too.
	popAsServer := startServer(t, f.pop, allowNames("region1"))
	_, err = dial(t, popAsServer.addr, ClientConfig(f.region, "region1"))
	require.ErrorIs(t, ClientError(err), ErrWrongName)
}

func TestClientRefusesServerFromOtherCA(t *testing.T) {
	f := newFixture(t)
	other := t.TempDir()
	require.NoError(t, InitCA(other, time.Hour, time.Now()))
	require.NoError(t, Issue(other, "region1", time.Hour, time.Now()))
	fake, err := OpenStore(other, "region1", nil)
	require.NoError(t, err)
	ts := startServer(t, fake, allowNames("pop1"))
	_, err = dial(t, ts.addr, ClientConfig(f.pop, "region1"))
	require.ErrorIs(t, ClientError(err), ErrUnknownAuthority)
}

func TestRotation(t *testing.T) {
	f := newFixture(t)
	ts := startServer(t, f.region, allowNames("pop1"))
	oldPop, oldRegion := f.pop.Leaf().SerialNumber, f.region.Leaf().SerialNumber

	require.NoError(t, Issue(f.dir, "pop1", DefaultNodeValidity, time.Now()))
	require.NoError(t, Issue(f.dir, "region1", DefaultNodeValidity, time.Now()))
	require.NoError(t, f.pop.Reload())
	require.NoError(t, f.region.Reload())
	require.NotEqual(t, oldPop, f.pop.Leaf().SerialNumber)
	require.NotEqual(t, oldRegion, f.region.Leaf().SerialNumber)

	c, err := dial(t, ts.addr, ClientConfig(f.pop, "region1"))
	require.NoError(t, err)
	require.Equal(t, f.region.Leaf().SerialNumber, c.ConnectionState().TLS.PeerCertificates[0].SerialNumber)
	require.Equal(t, f.pop.Leaf().SerialNumber, ts.nextAccepted(t).serial)
}

func TestCARotation(t *testing.T) {
	f := newFixture(t)
	ts := startServer(t, f.region, allowNames("pop1"))

	// A pop already holds a certificate from the next CA.
	next := t.TempDir()
	require.NoError(t, InitCA(next, DefaultCAValidity, time.Now()))
	require.NoError(t, Issue(next, "pop1", DefaultNodeValidity, time.Now()))
	nextPop, err := OpenStore(next, "pop1", nil)
	require.NoError(t, err)
	// It trusts both CAs so that it still accepts the old region certificate.
	bundle := append(readFile(t, filepath.Join(next, CACertFile)), readFile(t, filepath.Join(f.dir, CACertFile))...)
	writeFile(t, filepath.Join(next, CACertFile), bundle)
	require.NoError(t, Issue(next, "pop1", DefaultNodeValidity, time.Now()), "issue finds its CA in a bundle")
	require.NoError(t, nextPop.Reload())
	require.Len(t, nextPop.CAs(), 2)

	require.Error(t, dialRefused(t, ts.addr, ClientConfig(nextPop, "region1")))
	require.ErrorIs(t, ts.nextReject(t).err, ErrUnknownAuthority)

	// The region learns the next CA from its file, without a restart.
	writeFile(t, filepath.Join(f.dir, CACertFile), bundle)
	require.NoError(t, f.region.Reload())
	_, err = dial(t, ts.addr, ClientConfig(nextPop, "region1"))
	require.NoError(t, err)
	require.Equal(t, nextPop.Leaf().SerialNumber, ts.nextAccepted(t).serial)
}

func TestEphemeral(t *testing.T) {
	e, err := NewEphemeral("region1", "pop1")
	require.NoError(t, err)
	region, err := e.Store("region1", nil)
	require.NoError(t, err)
	pop, err := e.Store("pop1", nil)
	require.NoError(t, err)
	require.NoError(t, pop.Reload(), "reload of an in-memory store is a no-op")
	_, err = e.Store("pop2", nil)
	require.ErrorContains(t, err, `no certificate for node "pop2"`)

	ts := startServer(t, region, allowNames("pop1"))
	c, err := dial(t, ts.addr, ClientConfig(pop, "region1"))
	require.NoError(t, err)
	require.Equal(t, "pop1", ts.nextAccepted(t).peer)
	require.Equal(t, "region1", c.ConnectionState().TLS.PeerCertificates[0].DNSNames[0])

	// Another throwaway PKI is another CA: verification is not skipped.
	e2, err := NewEphemeral("pop1")
	require.NoError(t, err)
	stranger, err := e2.Store("pop1", nil)
	require.NoError(t, err)
	_, err = dial(t, ts.addr, ClientConfig(stranger, "region1"))
	require.ErrorIs(t, ClientError(err), ErrUnknownAuthority, "the stranger refuses the region")
	cfg := ClientConfig(pop, "region1")
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return stranger.Certificate(), nil
	}
	require.Error(t, dialRefused(t, ts.addr, cfg))
	require.ErrorIs(t, ts.nextReject(t).err, ErrUnknownAuthority, "the region refuses the stranger")

	_, err = NewEphemeral("pop1", "pop1")
	require.ErrorContains(t, err, "duplicate")
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// writeFile replaces path atomically, as an operator's tooling should.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	require.NoError(t, writeReplace(path, data, 0o644))
}

// TestClientCARotation: a client built with ClientConfigs trusts, at each
// dial, the CA pool its store holds then: a region moved to the next CA is
// refused before the pop learns that CA and accepted after, without a new
// ClientConfigs.
func TestClientCARotation(t *testing.T) {
	f := newFixture(t)
	next := t.TempDir()
	require.NoError(t, InitCA(next, DefaultCAValidity, time.Now()))
	require.NoError(t, Issue(next, "region1", DefaultNodeValidity, time.Now()))
	nextRegion, err := OpenStore(next, "region1", nil)
	require.NoError(t, err)
	// The region trusts both CAs, so that it accepts the old pop.
	bundle := append(readFile(t, filepath.Join(next, CACertFile)), readFile(t, filepath.Join(f.dir, CACertFile))...)
	writeFile(t, filepath.Join(next, CACertFile), bundle)
	require.NoError(t, nextRegion.Reload())
	ts := startServer(t, nextRegion, allowNames("pop1"))

	configs := ClientConfigs(f.pop, "region1")
	_, err = dial(t, ts.addr, configs())
	require.ErrorIs(t, ClientError(err), ErrUnknownAuthority, "the pop does not know the next CA yet")

	writeFile(t, filepath.Join(f.dir, CACertFile), bundle)
	require.NoError(t, f.pop.Reload())
	_, err = dial(t, ts.addr, configs())
	require.NoError(t, err, "the next dial trusts the CA the store holds now")
}

func TestClientErrorMapping(t *testing.T) {
	require.NoError(t, ClientError(nil))
	require.ErrorIs(t, ClientError(fmt.Errorf("dial: %w", x509.HostnameError{Host: "r2", Certificate: &x509.Certificate{}})), ErrWrongName)
	require.ErrorIs(t, ClientError(x509.UnknownAuthorityError{}), ErrUnknownAuthority)
	require.ErrorIs(t, ClientError(x509.CertificateInvalidError{Reason: x509.Expired}), ErrExpired)
	other := errors.New("other")
	require.Equal(t, other, ClientError(other))
}
