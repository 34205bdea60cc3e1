package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Reasons a peer is refused. Handshake errors and the reason passed to an
// onReject callback wrap exactly one of them; [RejectReason] turns them into
// metric labels.
var (
	// ErrNoCertificate: the peer presented no certificate.
	ErrNoCertificate = errors.New("no certificate presented")
	// ErrExpired: a certificate of the chain is expired or not yet valid.
	ErrExpired = errors.New("certificate expired or not yet valid")
	// ErrSelfSigned: the peer presented a self-signed certificate.
	ErrSelfSigned = errors.New("self-signed certificate")
	// ErrUnknownAuthority: the certificate does not chain to a trusted CA.
	ErrUnknownAuthority = errors.New("certificate signed by unknown authority")
	// ErrUnknownNode: the certificate is valid but its node name is not
	// allowed to connect.
	ErrUnknownNode = errors.New("unknown node name")
	// ErrWrongName: the server's certificate is for another node than the
	// one dialled.
	ErrWrongName = errors.New("certificate is for the wrong node")
	// ErrNotOperator: a valid certificate of the fleet that is not an
	// operator certificate (a node's, say) was presented where only
	// operators are admitted.
	ErrNotOperator = errors.New("not an operator certificate")
	// ErrBadCertificate: any other defect (wrong key usage, not exactly one
	// DNS name, ...).
	ErrBadCertificate = errors.New("bad certificate")
)

// RejectReason returns a short label for a rejection error, suitable as a
// metric label value: no_certificate, expired, self_signed, unknown_authority,
// unknown_node, wrong_name, not_operator, bad_certificate, or other.
func RejectReason(err error) string {
	for _, r := range []struct {
		err   error
		label string
	}{
		{ErrNoCertificate, "no_certificate"},
		{ErrExpired, "expired"},
		{ErrSelfSigned, "self_signed"},
		{ErrUnknownAuthority, "unknown_authority"},
		{ErrUnknownNode, "unknown_node"},
		{ErrWrongName, "wrong_name"},
		{ErrNotOperator, "not_operator"},
		{ErrBadCertificate, "bad_certificate"},
	} {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return "other"
}

// ClientError maps a client-side handshake error onto this package's
// reasons: crypto/tls verifies the server's chain and name before
// VerifyConnection runs, so a wrong name, an unknown authority or an
// expired certificate arrive as x509 errors. The result wraps both the
// reason and err; errors it does not recognise are returned as they are.
func ClientError(err error) error {
	var host x509.HostnameError
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &host):
		return fmt.Errorf("%w: %w", ErrWrongName, err)
	case errors.As(err, &unknown):
		return fmt.Errorf("%w: %w", ErrUnknownAuthority, err)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("%w: %w", ErrExpired, err)
	}
	return err
}

// PeerName returns the node name of the peer of a completed handshake on a
// connection configured by [ServerConfig] or [ClientConfig] (for QUIC:
// conn.ConnectionState().TLS). Those configurations have already verified the
// certificate and the name; PeerName only extracts it.
func PeerName(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", ErrNoCertificate
	}
	return nodeName(cs.PeerCertificates[0])
}

// nodeName returns the single DNS name of a node certificate.
func nodeName(c *x509.Certificate) (string, error) {
	if len(c.DNSNames) != 1 {
		return "", fmt.Errorf("%w: certificate %q carries %d DNS names, want exactly one node name",
			ErrBadCertificate, c.Subject.CommonName, len(c.DNSNames))
	}
	return c.DNSNames[0], nil
}

// verifyPeer checks the peer certificate of cs against roots at the current
// time, for usage; then that its node name equals want (if not empty) and
// that allow accepts it (if not nil). It returns the name.
func verifyPeer(roots *x509.CertPool, cs tls.ConnectionState, usage x509.ExtKeyUsage, want string, allow func(string) bool) (string, error) {
	leaf, err := verifyLeaf(roots, cs, usage)
	if err != nil {
		return "", err
	}
	name, err := nodeName(leaf)
	if err != nil {
		return "", err
	}
	if want != "" && name != want {
		return "", fmt.Errorf("%w: presented %q, dialled %q", ErrWrongName, name, want)
	}
	if allow != nil && !allow(name) {
		return "", fmt.Errorf("%w %q", ErrUnknownNode, name)
	}
	return name, nil
}

// verifyLeaf checks the peer certificate of cs (with the intermediates the
// peer sent) against roots at the current time, for usage, and returns it.
// It is the one rule for what a valid certificate is, whoever presents it.
func verifyLeaf(roots *x509.CertPool, cs tls.ConnectionState, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, ErrNoCertificate
	}
	leaf := cs.PeerCertificates[0]
	rest := make([][]byte, 0, len(cs.PeerCertificates)-1)
	for _, c := range cs.PeerCertificates[1:] {
		rest = append(rest, c.Raw)
	}
	if _, err := verifyChain(roots, leaf, rest, time.Now(), usage, ""); err != nil {
		return nil, err
	}
	return leaf, nil
}

// verifyChain verifies leaf (with the DER intermediates) against roots and
// maps the x509 errors to the sentinel errors of this package.
func verifyChain(roots *x509.CertPool, leaf *x509.Certificate, intermediates [][]byte, now time.Time, usage x509.ExtKeyUsage, dnsName string) ([][]*x509.Certificate, error) {
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
		DNSName:       dnsName,
	}
	for _, der := range intermediates {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: parse intermediate: %w", ErrBadCertificate, err)
		}
		opts.Intermediates.AddCert(c)
	}
	chains, err := leaf.Verify(opts)
	if err == nil {
		return chains, nil
	}
	var (
		invalid x509.CertificateInvalidError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
	)
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		c := invalid.Cert
		return nil, fmt.Errorf("%w: %q is valid from %s to %s, now is %s", ErrExpired, c.Subject.CommonName,
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case errors.As(err, &unknown):
		if isSelfSigned(leaf) {
			return nil, fmt.Errorf("%w: %q is signed by itself, not by the backbone CA", ErrSelfSigned, leaf.Subject.CommonName)
		}
		return nil, fmt.Errorf("%w: %q is issued by %q, which is not a trusted backbone CA", ErrUnknownAuthority,
			leaf.Subject.CommonName, leaf.Issuer.CommonName)
	case errors.As(err, &host):
		return nil, fmt.Errorf("%w: %w", ErrWrongName, err)
	default:
		return nil, fmt.Errorf("%w: %w", ErrBadCertificate, err)
	}
}

// isSelfSigned reports whether c names itself as issuer and its signature
// verifies with its own key.
func isSelfSigned(c *x509.Certificate) bool {
	if string(c.RawIssuer) != string(c.RawSubject) {
		return false
	}
	return c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}
