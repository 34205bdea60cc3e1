package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollInterval is how often [Store.Run] looks for changed files.
const DefaultPollInterval = 3 * time.Second

// Store holds one node's current certificate, key and trusted CA pool. A Store
// opened on a directory re-reads the files when they change, so that node
// certificates and CAs rotate without a restart; handshakes always use the
// material current at that moment. All methods are safe for concurrent use.
type Store struct {
	node   string
	dir    string // empty for an in-memory store
	logger *slog.Logger
	// interval between polls in Run.
	interval time.Duration

	// cur is the material handshakes read; it is never nil.
	cur atomic.Pointer[material]

	// mu serialises reloads and guards seen.
	mu   sync.Mutex
	seen fileStamp
}

// material is an immutable snapshot of what a node trusts and presents.
type material struct {
	cas  []*x509.Certificate
	pool *x509.CertPool
	cert *tls.Certificate // Leaf is set
}

// fileStamp is the size and modification time of the three files of a store.
type fileStamp [3]struct {
	size  int64
	mtime time.Time
	err   bool
}

// OpenStore loads dir/ca.crt, dir/NODE.crt and dir/NODE.key. The certificate
// must name node and chain to one of the CAs in ca.crt. Call [Store.Run] to
// follow later changes of the files. A nil logger discards logs.
func OpenStore(dir, node string, logger *slog.Logger) (*Store, error) {
	if err := ValidNodeName(node); err != nil {
		return nil, fmt.Errorf("open pki store: %w", err)
	}
	s := newStore(node, dir, logger)
	if err := s.Reload(); err != nil {
		return nil, fmt.Errorf("open pki store: %w", err)
	}
	return s, nil
}

func newStore(node, dir string, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{
		node:     node,
		dir:      dir,
		logger:   logger.With("component", "pki", "node", node),
		interval: DefaultPollInterval,
	}
}

// Node returns the node name the store presents.
func (s *Store) Node() string { return s.node }

// Certificate returns the node's current certificate and key.
func (s *Store) Certificate() *tls.Certificate { return s.cur.Load().cert }

// Leaf returns the node's current parsed certificate, e.g. to export its
// expiry as a metric.
func (s *Store) Leaf() *x509.Certificate { return s.cur.Load().cert.Leaf }

// CAs returns the currently trusted CA certificates.
func (s *Store) CAs() []*x509.Certificate { return slices.Clone(s.cur.Load().cas) }

// Run polls the files every few seconds and reloads them when their size or
// modification time changes, until ctx is done; it then returns nil. A file
// that fails to load is logged and the previous material kept. Run on an
// in-memory store just waits for ctx.
func (s *Store) Run(ctx context.Context) error {
	if s.dir == "" {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.poll()
		}
	}
}

// poll reloads if the files changed since the last attempt; each change is
// tried once, so a bad file is logged once, not on every poll.
func (s *Store) poll() {
	s.mu.Lock()
	changed := s.stamp() != s.seen
	s.mu.Unlock()
	if !changed {
		return
	}
	if err := s.Reload(); err != nil {
		s.logger.Warn("pki reload failed, keeping previous certificates", "err", err)
	}
}

// Reload re-reads the files now. On error the previous material stays in use
// and the error says which file is wrong. Reload on an in-memory store does
// nothing.
func (s *Store) Reload() error {
	if s.dir == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Stamp before reading: a change that lands during the read is seen
	// again by the next poll.
	s.seen = s.stamp()
	m, err := loadMaterial(s.dir, s.node, time.Now())
	if err != nil {
		return err
	}
	old := s.cur.Swap(m)
	leaf := m.cert.Leaf
	if old == nil || !old.cert.Leaf.Equal(leaf) || !slices.EqualFunc(old.cas, m.cas, (*x509.Certificate).Equal) {
		s.logger.Info("pki material loaded", "serial", leaf.SerialNumber.Text(16),
			"not_after", leaf.NotAfter, "cas", len(m.cas))
	}
	if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		s.logger.Warn("node certificate is outside its validity period, peers will refuse it",
			"not_before", leaf.NotBefore, "not_after", leaf.NotAfter)
	}
	return nil
}

func (s *Store) paths() [3]string {
	return [3]string{filepath.Join(s.dir, CACertFile), NodeCertFile(s.dir, s.node), NodeKeyFile(s.dir, s.node)}
}

func (s *Store) stamp() fileStamp {
	var st fileStamp
	for i, p := range s.paths() {
		fi, err := os.Stat(p)
		if err != nil {
			st[i].err = true
			continue
		}
		st[i].size, st[i].mtime = fi.Size(), fi.ModTime()
	}
	return st
}

// loadMaterial reads and checks the files of node in dir.
func loadMaterial(dir, node string, now time.Time) (*material, error) {
	caPath, certPath, keyPath := filepath.Join(dir, CACertFile), NodeCertFile(dir, node), NodeKeyFile(dir, node)
	cas, err := readCerts(caPath)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", certPath, keyPath, err)
	}
	m, err := newMaterial(cas, &cert, node, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	return m, nil
}

// newMaterial checks that cert is for node and chains to one of cas.
func newMaterial(cas []*x509.Certificate, cert *tls.Certificate, node string, now time.Time) (*material, error) {
	pool, err := caPool(cas)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		cert.Leaf = leaf
	}
	if name, err := nodeName(cert.Leaf); err != nil {
		return nil, err
	} else if name != node {
		return nil, fmt.Errorf("certificate is for node %q, not %q", name, node)
	}
	_, err = verifyChain(pool, cert.Leaf, cert.Certificate[1:], now, x509.ExtKeyUsageAny, "")
	// An expired certificate is still loaded (and logged by the caller): it
	// is what the operator installed, and the peers will say why they refuse it.
	if err != nil && !errors.Is(err, ErrExpired) {
		return nil, err
	}
	return &material{cas: cas, pool: pool, cert: cert}, nil
}

// caPool makes a pool of cas, which must all be CA certificates.
func caPool(cas []*x509.Certificate) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, c := range cas {
		if !c.IsCA {
			return nil, fmt.Errorf("CA file holds %q, which is not a CA certificate", c.Subject.CommonName)
		}
		pool.AddCert(c)
	}
	return pool, nil
}

// readCerts reads the PEM certificates of the file at path.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := parseCertsPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}
