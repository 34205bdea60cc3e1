package pki

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Role is what an operator certificate allows on a node's remote admin API.
type Role string

// Roles of an operator.
const (
	// RoleRead reads: status, metrics, readiness, the dashboard.
	RoleRead Role = "read"
	// RoleAdmin also changes state: drain, undrain and every other POST.
	RoleAdmin Role = "admin"
)

// ParseRole returns the Role named s ("read" or "admin").
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleRead, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want read or admin", s)
}

// Operator is the identity an operator certificate carries.
type Operator struct {
	// Name of the person or tool, e.g. "alice".
	Name string
	// Role says what the operator may do.
	Role Role
}

// operatorDir is the subdirectory of a PKI directory that holds operator
// certificates, so that their names never clash with a node's files.
const operatorDir = "operators"

// OperatorCertFile returns the path of operator name's certificate in the
// PKI directory dir.
func OperatorCertFile(dir, name string) string {
	return filepath.Join(dir, operatorDir, name+".crt")
}

// OperatorKeyFile returns the path of operator name's private key in dir.
func OperatorKeyFile(dir, name string) string {
	return filepath.Join(dir, operatorDir, name+".key")
}

// IssueOperator reads the CA from dir and writes dir/operators/NAME.crt
// (mode 0644) and NAME.key (mode 0600): a fresh ECDSA P-256 key and a
// certificate for client authentication only, with name as common name and
// one URI, anyedge://operator/NAME?role=ROLE, and no DNS name — so that it
// can never pass for a node on the backbone, nor a node's certificate for an
// operator's. Validity as for [Issue].
func IssueOperator(dir, name string, role Role, validity time.Duration, now time.Time) error {
	if err := ValidOperatorName(name); err != nil {
		return fmt.Errorf("issue: %w", err)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return fmt.Errorf("issue operator %s: %w", name, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, operatorDir), 0o700); err != nil {
		return fmt.Errorf("issue operator %s: %w", name, err)
	}
	return issueTo(dir, OperatorCertFile(dir, name), OperatorKeyFile(dir, name), "operator "+name, validity, now,
		func(ca *authority) (*x509.Certificate, *ecdsa.PrivateKey, error) {
			return newLeaf(ca, &x509.Certificate{
				Subject:     pkix.Name{CommonName: name, OrganizationalUnit: []string{"anyedge operator"}},
				URIs:        []*url.URL{operatorURI(Operator{Name: name, Role: role})},
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}, validity, now)
		})
}

// operatorURI is the URI that names op in its certificate.
func operatorURI(op Operator) *url.URL {
	return &url.URL{Scheme: "anyedge", Host: "operator", Path: "/" + op.Name,
		RawQuery: url.Values{"role": {string(op.Role)}}.Encode()}
}

// operatorOf reads the operator identity of a verified certificate.
func operatorOf(c *x509.Certificate) (Operator, error) {
	if len(c.DNSNames) != 0 || len(c.URIs) != 1 {
		return Operator{}, fmt.Errorf("%w: %q carries %d DNS names and %d URIs, want one operator URI",
			ErrNotOperator, c.Subject.CommonName, len(c.DNSNames), len(c.URIs))
	}
	u := c.URIs[0]
	name := strings.TrimPrefix(u.Path, "/")
	if u.Scheme != "anyedge" || u.Host != "operator" || ValidOperatorName(name) != nil {
		return Operator{}, fmt.Errorf("%w: %q names %q", ErrNotOperator, c.Subject.CommonName, u.String())
	}
	role, err := ParseRole(u.Query().Get("role"))
	if err != nil {
		return Operator{}, fmt.Errorf("%w: %q: %w", ErrBadCertificate, c.Subject.CommonName, err)
	}
	return Operator{Name: name, Role: role}, nil
}

// VerifyOperator checks the client certificate of a TLS connection
// accepted with [AdminServerConfig] by the same rule as the backbone's
// (chains to the store's current CA pool, valid now, for client
// authentication) and returns the operator it names. The error wraps
// [ErrNoCertificate], [ErrExpired], [ErrSelfSigned], [ErrUnknownAuthority],
// [ErrBadCertificate] or, for a valid certificate that is not an operator's
// (a node's), [ErrNotOperator].
func (s *Store) VerifyOperator(cs tls.ConnectionState) (Operator, error) {
	leaf, err := verifyLeaf(s.cur.Load().pool, cs, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return Operator{}, err
	}
	return operatorOf(leaf)
}

// AdminServerConfig returns the TLS configuration of a node's remote admin
// API: TLS 1.3, the node's current certificate, and a client certificate
// requested but not checked during the handshake. The handshake does prove
// that the client holds the certificate's key; the HTTP layer then checks
// the certificate with [Store.VerifyOperator] on every request, so that a
// missing or wrong certificate gets a 401 or 403 with a reason (and a log
// line) instead of a bare handshake failure, and a CA rotation or an
// expiry applies to open connections too.
func AdminServerConfig(s *Store) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"http/1.1"},
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.Certificate(), nil
		},
	}
}

// OperatorClient holds an operator's certificate and the fleet's CA pool,
// read once from files, and makes the TLS configurations that reach nodes'
// remote admin APIs.
type OperatorClient struct {
	cert tls.Certificate
	pool *x509.CertPool
	op   Operator
}

// LoadOperator reads an operator certificate and key (as written by
// [IssueOperator]) and the fleet's CA certificates (ca.crt).
func LoadOperator(certFile, keyFile, caFile string) (*OperatorClient, error) {
	cas, err := readCerts(caFile)
	if err != nil {
		return nil, fmt.Errorf("operator credentials: %w", err)
	}
	pool, err := caPool(cas)
	if err != nil {
		return nil, fmt.Errorf("operator credentials: %s: %w", caFile, err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("operator credentials: %w", err)
	}
	op, err := operatorOf(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("operator credentials: %s: %w", certFile, err)
	}
	return &OperatorClient{cert: cert, pool: pool, op: op}, nil
}

// Operator returns the identity in the loaded certificate.
func (c *OperatorClient) Operator() Operator { return c.op }

// TLSConfig returns the configuration for one connection to the remote
// admin API of node (its name in the topology). The server must present a
// node certificate that passes the backbone's rule against the loaded CA
// pool (chain, validity, server authentication, exactly one node name) and
// names node; an empty node accepts any node of the fleet.
func (c *OperatorClient) TLSConfig(node string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"http/1.1"},
		ServerName:   node,
		Certificates: []tls.Certificate{c.cert},
		// crypto/tls's own check is replaced, not skipped: VerifyConnection
		// applies verifyPeer, the rule every backbone handshake uses, on
		// every handshake including resumed ones.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if _, err := verifyPeer(c.pool, cs, x509.ExtKeyUsageServerAuth, node, nil); err != nil {
				return fmt.Errorf("admin API of %q refused: %w", node, err)
			}
			return nil
		},
	}
}
