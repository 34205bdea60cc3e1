// Package tlsterm terminates TLS at the edge for the TCP listeners that ask
// for it: certificates from PEM files chosen by the client's SNI and
// reloaded when their files change, ALPN negotiated with the client from a
// configured list, and a handshake bounded in time. The handshake then
// costs only the round trips between the client and its PoP, and the
// decrypted bytes ride the warm backbone like any plain-text flow.
//
// Choices (README, "TLS at the edge"):
//
//   - A client without SNI gets the first configured certificate. A client
//     whose SNI names no configured certificate (exact DNS name, or a
//     wildcard "*.example.com" for one label) is refused with the alert
//     unrecognized_name: the edge never shows a certificate for a name it
//     does not serve.
//   - A certificate that is expired or not yet valid, a key that does not
//     match its certificate, and a key file readable by every user are
//     refused when loaded, with an error naming the file: New fails (the
//     node does not start), and a reload keeps the pair in force. A
//     certificate that expires while loaded is still served (its clients
//     refuse it) and a warning is logged, once, as it nears expiry and once
//     it has expired.
//   - Files are checked for changes (modification time, size, inode) every
//     CheckInterval; a changed pair is loaded again and swapped in for new
//     handshakes without a restart. Both files of a pair must be complete
//     when the check runs: write them elsewhere and rename them into place.
package tlsterm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/anyedge/anyedge/backbone/splice"
)

// Defaults.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultCheckInterval    = 5 * time.Second
	// ExpiryWarning is how long before a loaded certificate expires its
	// warning is logged.
	ExpiryWarning = 7 * 24 * time.Hour
)

// Pair names one certificate (PEM, the leaf first, then its chain) and its
// private key (PEM).
type Pair struct {
	CertFile, KeyFile string
}

// Config configures a Terminator.
type Config struct {
	// Certificates are the pairs served; the first is also served to
	// clients that send no SNI. At least one.
	Certificates []Pair
	// ALPN lists the application protocols offered to clients, in order of
	// preference (e.g. "h2", "http/1.1"); empty: no ALPN. A client that
	// offers ALPN but none of these is refused (no_application_protocol).
	ALPN []string
	// HandshakeTimeout bounds a client's handshake (default
	// DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// CheckInterval is how often the files are checked for changes
	// (default DefaultCheckInterval).
	CheckInterval time.Duration
	// Now is the clock certificates are checked against (default
	// time.Now).
	Now func() time.Time
	// Logger receives reloads and refusals.
	Logger *slog.Logger
}

// CheckALPN reports why protos cannot be a listener's ALPN list: each
// protocol 1–255 bytes, no duplicates.
func CheckALPN(protos []string) error {
	seen := map[string]bool{}
	for i, p := range protos {
		switch {
		case p == "" || len(p) > 255:
			return fmt.Errorf("alpn[%d]: %q must be 1 to 255 bytes", i, p)
		case seen[p]:
			return fmt.Errorf("alpn[%d]: %q is listed twice", i, p)
		}
		seen[p] = true
	}
	return nil
}

// Terminator terminates TLS for one listener. It is safe for concurrent
// use; Run watches its files.
type Terminator struct {
	cfg Config
	log *slog.Logger
	set atomic.Pointer[certSet]
	// reloads and reloadErrors count pair reloads that took effect and that
	// failed (the old pair staying in force).
	reloads, reloadErrors atomic.Uint64
	// checkMu serializes looks at the files: Run may run more than once
	// (a test's watcher beside the edge's), and check updates the loaded
	// pairs' bookkeeping in place.
	checkMu sync.Mutex
}

// certSet is an immutable snapshot of the loaded pairs.
type certSet struct {
	pairs  []*loaded
	byName map[string]*tls.Config // exact DNS names, lower case
	wild   map[string]*tls.Config // "example.com" for "*.example.com"
	def    *tls.Config            // clients without SNI
	none   *tls.Config            // no certificate: unrecognized_name
}

// loaded is one pair as loaded.
type loaded struct {
	pair Pair
	cert tls.Certificate
	leaf *x509.Certificate
	at   stamp // the files as they were when loaded
	// failed is the files' stamp whose load failed last (logged once).
	failed stamp
	// warned: 1 near expiry logged, 2 expiry logged.
	warned int
}

// stamp identifies the contents of a pair's files without reading them.
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
	certIno, keyIno   uint64
}

// New loads every pair and returns the Terminator; errors name the file.
func New(cfg Config) (*Terminator, error) {
	if len(cfg.Certificates) == 0 {
		return nil, errors.New("tls: no certificate configured")
	}
	if err := CheckALPN(cfg.ALPN); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &Terminator{cfg: cfg, log: logger.With("component", "tls")}
	var pairs []*loaded
	for _, p := range cfg.Certificates {
		l, err := t.load(p)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, l)
	}
	t.set.Store(t.build(pairs))
	return t, nil
}

// load reads, checks and parses one pair.
func (t *Terminator) load(p Pair) (*loaded, error) {
	st, err := statPair(p)
	if err != nil {
		return nil, err
	}
	kinfo, err := os.Stat(p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls key %s: %w", p.KeyFile, err)
	}
	if mode := kinfo.Mode().Perm(); mode&0o004 != 0 {
		return nil, fmt.Errorf("tls key %s is readable by every user (mode %04o): refusing it; chmod o-r it (0600 or 0640)", p.KeyFile, mode)
	}
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate %s: %w", p.CertFile, err)
	}
	keyPEM, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls key %s: %w", p.KeyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls certificate %s with key %s: %w", p.CertFile, p.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls certificate %s: %w", p.CertFile, err)
		}
	}
	now := t.cfg.Now()
	switch {
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("tls certificate %s expired on %s", p.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("tls certificate %s is not valid before %s", p.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return &loaded{pair: p, cert: cert, leaf: leaf, at: st}, nil
}

// statPair stamps a pair's files.
func statPair(p Pair) (stamp, error) {
	var s stamp
	ci, err := os.Stat(p.CertFile)
	if err != nil {
		return s, fmt.Errorf("tls certificate %s: %w", p.CertFile, err)
	}
	ki, err := os.Stat(p.KeyFile)
	if err != nil {
		return s, fmt.Errorf("tls key %s: %w", p.KeyFile, err)
	}
	s.certMod, s.certSize, s.certIno = ci.ModTime(), ci.Size(), inode(ci)
	s.keyMod, s.keySize, s.keyIno = ki.ModTime(), ki.Size(), inode(ki)
	return s, nil
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// build makes the snapshot of pairs: one TLS configuration per pair, the
// names that choose it (the first pair naming a name wins).
func (t *Terminator) build(pairs []*loaded) *certSet {
	s := &certSet{pairs: pairs, byName: map[string]*tls.Config{}, wild: map[string]*tls.Config{}}
	for _, l := range pairs {
		c := t.serverConfig([]tls.Certificate{l.cert})
		if s.def == nil {
			s.def = c
		}
		for _, n := range l.leaf.DNSNames {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				if _, dup := s.wild[rest]; !dup {
					s.wild[rest] = c
				}
			} else if _, dup := s.byName[n]; !dup {
				s.byName[n] = c
			}
		}
	}
	s.none = t.serverConfig(nil)
	return s
}

func (t *Terminator) serverConfig(certs []tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: certs,
		NextProtos:   t.cfg.ALPN,
		MinVersion:   tls.VersionTLS12,
	}
}

// configFor picks the configuration for a ClientHello: by SNI, the
// default without one, and none (alert unrecognized_name) for a name no
// certificate carries.
func (s *certSet) configFor(sni string) *tls.Config {
	if sni == "" {
		return s.def
	}
	name := strings.ToLower(strings.TrimSuffix(sni, "."))
	if c, ok := s.byName[name]; ok {
		return c
	}
	if _, rest, ok := strings.Cut(name, "."); ok {
		if c, ok := s.wild[rest]; ok {
			return c
		}
	}
	return s.none
}

// TLSConfig returns the server configuration of the listener: it chooses
// the certificate per ClientHello from the pairs in force.
func (t *Terminator) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			return t.set.Load().configFor(hello.ServerName), nil
		},
	}
}

// Stats counts reloads.
type Stats struct {
	// Reloads counts pairs loaded again after their files changed;
	// ReloadErrors the changes that could not be loaded (the old pair
	// stays in force).
	Reloads, ReloadErrors uint64
}

// Stats returns the reload counters.
func (t *Terminator) Stats() Stats {
	return Stats{Reloads: t.reloads.Load(), ReloadErrors: t.reloadErrors.Load()}
}

// Run checks the files every CheckInterval until ctx ends, swapping in the
// pairs whose files changed, and warns about certificates nearing or past
// expiry. It returns nil when ctx ends.
func (t *Terminator) Run(ctx context.Context) error {
	tick := time.NewTicker(t.cfg.CheckInterval)
	defer tick.Stop()
	for {
		t.check()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// check is one look at the files.
func (t *Terminator) check() {
	t.checkMu.Lock()
	defer t.checkMu.Unlock()
	cur := t.set.Load()
	next := make([]*loaded, len(cur.pairs))
	copy(next, cur.pairs)
	changed := false
	now := t.cfg.Now()
	for i, l := range next {
		switch {
		case l.warned < 2 && now.After(l.leaf.NotAfter):
			l.warned = 2
			t.log.Warn("tls certificate has expired; still served until its files are replaced",
				"file", l.pair.CertFile, "not_after", l.leaf.NotAfter)
		case l.warned < 1 && now.Add(ExpiryWarning).After(l.leaf.NotAfter):
			l.warned = 1
			t.log.Warn("tls certificate expires soon", "file", l.pair.CertFile, "not_after", l.leaf.NotAfter)
		}
		st, err := statPair(l.pair)
		if err != nil || st == l.at {
			if err != nil && st != l.failed {
				l.failed = st
				t.reloadErrors.Add(1)
				t.log.Error("tls certificate files unreadable; the loaded pair stays in force", "err", err)
			}
			continue
		}
		fresh, err := t.load(l.pair)
		if err != nil {
			if st != l.failed {
				l.failed = st
				t.reloadErrors.Add(1)
				t.log.Error("tls certificate changed but cannot be loaded; the loaded pair stays in force", "err", err)
			}
			continue
		}
		next[i] = fresh
		changed = true
		t.reloads.Add(1)
		t.log.Info("tls certificate reloaded", "file", l.pair.CertFile, "names", fresh.leaf.DNSNames,
			"not_after", fresh.leaf.NotAfter)
	}
	if changed {
		t.set.Store(t.build(next))
	}
}

// Handshake runs the server side of the TLS handshake on c, bounded by the
// handshake timeout and ctx, and returns the connection to splice. On an
// error the caller still owns c.
func (t *Terminator) Handshake(ctx context.Context, c *net.TCPConn) (*Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, t.cfg.HandshakeTimeout)
	defer cancel()
	tc := tls.Server(c, t.TLSConfig())
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, err
	}
	st := tc.ConnectionState()
	return &Conn{TLS: splice.TLS{Conn: tc, Raw: c}, Info: Info{SNI: st.ServerName, ALPN: st.NegotiatedProtocol, Version: st.Version}}, nil
}

// Info is what a handshake negotiated.
type Info struct {
	// SNI is the server name the client asked for ("" without SNI).
	SNI string
	// ALPN is the application protocol negotiated ("" without ALPN).
	ALPN string
	// Version is the TLS version (tls.VersionTLS13, …).
	Version uint16
}

// Conn is a client connection after its handshake, as the edge splices
// it (splice.TLS: splice it with Options.Buffered).
type Conn struct {
	splice.TLS
	// Info is what the handshake negotiated.
	Info Info
}
