package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"
)

// ephemeralValidity is how long the certificates of an [Ephemeral] PKI last.
const ephemeralValidity = 30 * 24 * time.Hour

// Ephemeral is a throwaway in-memory PKI for `anyedge dev`: a fresh CA and a
// certificate per node, never written to disk. Stores made from it verify
// peers exactly like stores loaded from files.
type Ephemeral struct {
	ca    *authority
	nodes map[string]*tls.Certificate
}

// NewEphemeral creates a CA and one certificate for each node name.
func NewEphemeral(nodes ...string) (*Ephemeral, error) {
	now := time.Now()
	ca, err := newCA(ephemeralValidity, now)
	if err != nil {
		return nil, fmt.Errorf("ephemeral pki: %w", err)
	}
	e := &Ephemeral{ca: ca, nodes: make(map[string]*tls.Certificate, len(nodes))}
	for _, n := range nodes {
		if err := ValidNodeName(n); err != nil {
			return nil, fmt.Errorf("ephemeral pki: %w", err)
		}
		if _, dup := e.nodes[n]; dup {
			return nil, fmt.Errorf("ephemeral pki: duplicate node %q", n)
		}
		leaf, key, err := newNodeCert(ca, n, ephemeralValidity, now)
		if err != nil {
			return nil, fmt.Errorf("ephemeral pki: %w", err)
		}
		e.nodes[n] = &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	}
	return e, nil
}

// CA returns the ephemeral CA certificate.
func (e *Ephemeral) CA() *x509.Certificate { return e.ca.cert }

// Store returns an in-memory store for node, one of the names given to
// [NewEphemeral]. A nil logger discards logs.
func (e *Ephemeral) Store(node string, logger *slog.Logger) (*Store, error) {
	cert, ok := e.nodes[node]
	if !ok {
		return nil, fmt.Errorf("ephemeral pki: no certificate for node %q", node)
	}
	m, err := newMaterial([]*x509.Certificate{e.ca.cert}, cert, node, time.Now())
	if err != nil {
		return nil, fmt.Errorf("ephemeral pki: %w", err)
	}
	s := newStore(node, "", logger)
	s.cur.Store(m)
	return s, nil
}
