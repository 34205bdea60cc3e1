package tlsterm_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/edge/tlsterm"
	"github.com/anyedge/anyedge/internal/testcert"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve accepts on 127.0.0.1 and runs the terminator's handshake on every
// connection, echoing what the client sends afterwards.
func serve(t *testing.T, term *tlsterm.Terminator) string {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				tc, err := term.Handshake(context.Background(), c)
				if err != nil {
					return
				}
				buf := make([]byte, 64)
				n, _ := tc.Read(buf)
				_, _ = tc.Write(buf[:n])
				_ = tc.CloseWrite()
			})
		}
	})
	return ln.Addr().String()
}

// dial handshakes with addr as a client that trusts ca, sending sni and
// offering alpn, and returns what it saw.
func dial(addr string, ca *testcert.CA, sni string, alpn ...string) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		RootCAs: ca.Pool(), ServerName: sni, NextProtos: alpn,
		// Without SNI the client cannot check a name: accept the chain.
		InsecureSkipVerify: sni == "",
	})
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		return tls.ConnectionState{}, err
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

func newTerm(t *testing.T, cfg tlsterm.Config) *tlsterm.Terminator {
	t.Helper()
	term, err := tlsterm.New(cfg)
	require.NoError(t, err)
	return term
}

// TestSNISelection: the certificate follows the client's server name —
// exact names, a wildcard for one label — the first certificate serves
// clients without SNI, and an unknown name is refused with the alert
// unrecognized_name.
func TestSNISelection(t *testing.T) {
	ca := testcert.NewCA(t)
	a := ca.Issue(t, "a", testcert.Leaf{Names: []string{"a.example.test", "www.a.example.test"}})
	b := ca.Issue(t, "b", testcert.Leaf{Names: []string{"*.b.example.test"}})
	term := newTerm(t, tlsterm.Config{Certificates: []tlsterm.Pair{{a.CertFile, a.KeyFile}, {b.CertFile, b.KeyFile}}})
	addr := serve(t, term)
	for sni, want := range map[string]testcert.Issued{
		"a.example.test": a, "WWW.A.example.test": a, "x.b.example.test": b, "": a,
	} {
		st, err := dial(addr, ca, sni)
		require.NoError(t, err, "sni %q", sni)
		require.Equal(t, want.Serial, st.PeerCertificates[0].SerialNumber, "sni %q", sni)
	}
	for _, sni := range []string{"unknown.test", "b.example.test", "y.x.b.example.test"} {
		_, err := dial(addr, ca, sni)
		require.ErrorContains(t, err, "unrecognized name", "sni %q", sni)
	}
}

// TestALPN: the protocol is negotiated from the configured list; a client
// that offers none of it is refused; one that offers no ALPN gets none.
func TestALPN(t *testing.T) {
	ca := testcert.NewCA(t)
	a := ca.Issue(t, "a", testcert.Leaf{Names: []string{"a.example.test"}})
	term := newTerm(t, tlsterm.Config{Certificates: []tlsterm.Pair{{a.CertFile, a.KeyFile}}, ALPN: []string{"h2", "http/1.1"}})
	addr := serve(t, term)
	st, err := dial(addr, ca, "a.example.test", "http/1.1")
	require.NoError(t, err)
	require.Equal(t, "http/1.1", st.NegotiatedProtocol)
	st, err = dial(addr, ca, "a.example.test", "h2", "http/1.1")
	require.NoError(t, err)
	require.Equal(t, "h2", st.NegotiatedProtocol)
	st, err = dial(addr, ca, "a.example.test")
	require.NoError(t, err)
	require.Empty(t, st.NegotiatedProtocol)
	_, err = dial(addr, ca, "a.example.test", "smtp")
	require.ErrorContains(t, err, "no application protocol")

	require.ErrorContains(t, tlsterm.CheckALPN([]string{"h2", "h2"}), `alpn[1]: "h2" is listed twice`)
	require.ErrorContains(t, tlsterm.CheckALPN([]string{""}), "1 to 255 bytes")
}

// TestRefusedAtLoad: an expired or not yet valid certificate, a key that
// does not match, a key file every user can read and a missing file are
// refused when loaded, each with an error naming the file.
func TestRefusedAtLoad(t *testing.T) {
	ca := testcert.NewCA(t)
	good := ca.Issue(t, "good", testcert.Leaf{Names: []string{"a.example.test"}})
	expired := ca.Issue(t, "expired", testcert.Leaf{Names: []string{"a.example.test"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	future := ca.Issue(t, "future", testcert.Leaf{Names: []string{"a.example.test"},
		NotBefore: time.Now().Add(24 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour)})
	open := ca.Issue(t, "open", testcert.Leaf{Names: []string{"a.example.test"}})
	require.NoError(t, os.Chmod(open.KeyFile, 0o644))
	for name, c := range map[string]struct {
		pair tlsterm.Pair
		want []string
	}{
		"expired":      {tlsterm.Pair{expired.CertFile, expired.KeyFile}, []string{expired.CertFile, "expired on"}},
		"not yet":      {tlsterm.Pair{future.CertFile, future.KeyFile}, []string{future.CertFile, "not valid before"}},
		"mismatch":     {tlsterm.Pair{good.CertFile, expired.KeyFile}, []string{good.CertFile, expired.KeyFile, "does not match"}},
		"world key":    {tlsterm.Pair{open.CertFile, open.KeyFile}, []string{open.KeyFile, "readable by every user", "0644"}},
		"missing cert": {tlsterm.Pair{good.CertFile + ".gone", good.KeyFile}, []string{good.CertFile + ".gone", "no such file"}},
	} {
		_, err := tlsterm.New(tlsterm.Config{Certificates: []tlsterm.Pair{{good.CertFile, good.KeyFile}, c.pair}})
		require.Error(t, err, name)
		for _, w := range c.want {
			require.ErrorContains(t, err, w, name)
		}
	}
	_, err := tlsterm.New(tlsterm.Config{})
	require.ErrorContains(t, err, "no certificate")
}

// TestRotationWithoutRestart: replacing a pair's files swaps the new
// certificate in for new handshakes; a replacement that cannot be loaded
// (here: expired) leaves the pair in force and is counted.
func TestRotationWithoutRestart(t *testing.T) {
	ca := testcert.NewCA(t)
	first := ca.Issue(t, "site", testcert.Leaf{Names: []string{"a.example.test"}})
	term := newTerm(t, tlsterm.Config{Certificates: []tlsterm.Pair{{first.CertFile, first.KeyFile}},
		CheckInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- term.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	addr := serve(t, term)
	st, err := dial(addr, ca, "a.example.test")
	require.NoError(t, err)
	require.Equal(t, first.Serial, st.PeerCertificates[0].SerialNumber)

	second := ca.IssueTo(t, first.CertFile, first.KeyFile, testcert.Leaf{Names: []string{"a.example.test"}})
	servedSerial := func() int64 {
		st, err := dial(addr, ca, "a.example.test")
		require.NoError(t, err)
		return st.PeerCertificates[0].SerialNumber.Int64()
	}
	deadline := time.Now().Add(10 * time.Second)
	for servedSerial() != second.Serial.Int64() {
		require.True(t, time.Now().Before(deadline), "the rotated certificate was never served")
	}
	// The certificate and key files are written one after the other: a
	// check between the two writes may load the pair once for each.
	require.GreaterOrEqual(t, term.Stats().Reloads, uint64(1), "the rotation was counted")

	ca.IssueTo(t, first.CertFile, first.KeyFile, testcert.Leaf{Names: []string{"a.example.test"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	for term.Stats().ReloadErrors == 0 {
		require.True(t, time.Now().Before(deadline.Add(10*time.Second)), "the expired replacement was never looked at")
		time.Sleep(time.Millisecond)
	}
	require.Equal(t, second.Serial.Int64(), servedSerial(), "the loaded pair stays in force")
}

// TestHandshakeTimeout: a client that connects and says nothing is cut
// after the handshake timeout.
func TestHandshakeTimeout(t *testing.T) {
	ca := testcert.NewCA(t)
	a := ca.Issue(t, "a", testcert.Leaf{Names: []string{"a.example.test"}})
	term := newTerm(t, tlsterm.Config{Certificates: []tlsterm.Pair{{a.CertFile, a.KeyFile}}, HandshakeTimeout: 50 * time.Millisecond})
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.AcceptTCP()
	require.NoError(t, err)
	defer s.Close()
	_, err = term.Handshake(context.Background(), s)
	require.Error(t, err)
}
