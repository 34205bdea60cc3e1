package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// unknownRemote is passed to onReject when the remote address is not known.
const unknownRemote = "unknown"

// ServerConfig returns the TLS configuration of a backbone server (a region).
//
// It speaks TLS 1.3 only with ALPN [ALPN], presents the store's current
// certificate, and demands a client certificate that chains to the store's
// current CA pool at the time of the handshake (so CA rotation needs no
// restart), is valid now, is usable for client authentication, carries
// exactly one DNS name, and whose name allow accepts (a nil allow accepts
// nobody; it is called from handshake goroutines, so it must be safe for
// concurrent use and quick, e.g. a lookup in an atomically swapped topology
// snapshot). Otherwise the handshake fails and onReject (if not nil) is called
// with the remote address and an error wrapping one of the Err* reasons, so
// the caller can log and count it ([RejectReason]). Under quic-go the remote
// address comes from the ClientHelloInfo quic-go fills in for
// GetConfigForClient; it is "unknown" if absent. onReject is not called for
// failures crypto/tls detects before or after the certificate check (an
// unparsable certificate, a bad CertificateVerify signature); those fail the
// handshake all the same.
//
// Session resumption stays on (tickets, in memory, keys managed by
// crypto/tls). It does not bypass these checks: on a resumed TLS 1.3
// handshake crypto/tls restores the client certificate from the ticket and
// calls VerifyConnection again, so the CA pool, the validity and allow are
// re-checked on every connection; a pop removed from the topology cannot
// resume its way in. A resumption refused this way fails once, the client
// drops the ticket and its next attempt is a full handshake.
//
// 0-RTT is not enabled here and must stay off on the QUIC side: leave
// quic.Config.Allow0RTT false (and dial with quic.Dial/DialAddr, not the
// Early variants); tickets then never allow early data.
func ServerConfig(s *Store, allow func(peerName string) bool, onReject func(remote string, reason error)) *tls.Config {
	if allow == nil {
		allow = func(string) bool { return false }
	}
	verify := func(remote string) func(tls.ConnectionState) error {
		return func(cs tls.ConnectionState) error {
			if _, err := verifyPeer(s.cur.Load().pool, cs, x509.ExtKeyUsageClientAuth, "", allow); err != nil {
				if onReject != nil {
					onReject(remote, err)
				}
				return fmt.Errorf("backbone client %s refused: %w", remote, err)
			}
			return nil
		}
	}
	base := &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		NextProtos: []string{ALPN},
		// RequestClientCert rather than RequireAnyClientCert so that a
		// missing certificate reaches VerifyConnection, which refuses it
		// with ErrNoCertificate and reports it to onReject. Verification
		// is never skipped: VerifyConnection runs on every handshake.
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.Certificate(), nil
		},
		VerifyConnection: verify(unknownRemote),
	}
	cfg := base.Clone()
	// A per-connection copy binds the remote address into VerifyConnection.
	// Session tickets keep working: crypto/tls takes the ticket keys from the
	// original config when the returned one has none of its own.
	cfg.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		remote := unknownRemote
		if hi.Conn != nil && hi.Conn.RemoteAddr() != nil {
			remote = hi.Conn.RemoteAddr().String()
		}
		c := base.Clone()
		c.VerifyConnection = verify(remote)
		return c, nil
	}
	return cfg
}

// ClientConfigs returns a function that builds the TLS configuration of a
// backbone client (a pop) dialling the node serverName (a region), one per
// dial, so that every handshake verifies against the store's CA pool of
// that moment (CA rotation without restart).
//
// Each configuration speaks TLS 1.3 only with ALPN [ALPN], presents the
// store's current certificate, and has crypto/tls verify the server's
// chain against the current CA pool, its validity, its server-auth usage
// and that it names serverName; VerifyConnection then insists on exactly
// one node name in the certificate, equal to serverName. Verification is
// never skipped. All configurations of one function share a session cache,
// so reconnects resume; resumed handshakes are checked again.
//
// In TLS 1.3 the client completes its side of the handshake before the server
// has checked the client certificate: when the server refuses this node,
// quic.Dial may still return a connection, which is then closed at once with
// a remote CRYPTO_ERROR (bad_certificate). Treat a connection that closes
// before its first exchange as a failed dial.
//
// A refused server surfaces as crypto/tls and x509 errors; [ClientError]
// maps them onto this package's reasons.
func ClientConfigs(s *Store, serverName string) func() *tls.Config {
	cache := tls.NewLRUClientSessionCache(64)
	return func() *tls.Config {
		return &tls.Config{
			MinVersion: tls.VersionTLS13,
			MaxVersion: tls.VersionTLS13,
			NextProtos: []string{ALPN},
			ServerName: serverName,
			RootCAs:    s.cur.Load().pool,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return s.Certificate(), nil
			},
			VerifyConnection: func(cs tls.ConnectionState) error {
				if serverName == "" {
					return fmt.Errorf("backbone server refused: %w: no server name configured", ErrWrongName)
				}
				if _, err := verifyPeer(s.cur.Load().pool, cs, x509.ExtKeyUsageServerAuth, serverName, nil); err != nil {
					return fmt.Errorf("backbone server %q refused: %w", serverName, err)
				}
				return nil
			},
			ClientSessionCache: cache,
		}
	}
}

// ClientConfig is one configuration from [ClientConfigs]: it trusts the
// CA pool of the moment it is made. Long-lived clients should take a fresh
// one per dial from ClientConfigs instead.
func ClientConfig(s *Store, serverName string) *tls.Config {
	return ClientConfigs(s, serverName)()
}
