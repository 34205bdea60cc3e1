package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// InitCA creates a new backbone CA in dir: dir/ca.crt (mode 0644) and
// dir/ca.key (mode 0600), an ECDSA P-256 key and a self-signed certificate
// valid from now (minus a few minutes of clock skew) for validity. dir is
// created with mode 0700 if missing. InitCA never overwrites: if either file
// exists it returns an error naming it.
func InitCA(dir string, validity time.Duration, now time.Time) error {
	if validity <= 0 {
		return fmt.Errorf("init ca: validity %v must be positive", validity)
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("init ca: %s already exists, refusing to overwrite", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("init ca: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("init ca: %w", err)
	}
	ca, err := newCA(validity, now)
	if err != nil {
		return fmt.Errorf("init ca: %w", err)
	}
	keyPEM, err := encodeKeyPEM(ca.key)
	if err != nil {
		return fmt.Errorf("init ca: %w", err)
	}
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("init ca: %w", err)
	}
	if err := writeNew(certPath, encodeCertPEM(ca.cert.Raw), 0o644); err != nil {
		_ = os.Remove(keyPath)
		return fmt.Errorf("init ca: %w", err)
	}
	return nil
}

// Issue reads the CA from dir (ca.crt and ca.key) and writes dir/NODE.crt
// (mode 0644) and dir/NODE.key (mode 0600): a fresh ECDSA P-256 key and a
// certificate with node as common name and only DNS name, usable for both
// server and client authentication, valid from now (minus a few minutes of
// clock skew) for validity but never beyond the CA's own expiry. Existing node
// files are replaced atomically (each file is renamed into place), which is
// how a node certificate is rotated: a running [Store] picks the new pair up.
func Issue(dir, node string, validity time.Duration, now time.Time) error {
	if err := ValidNodeName(node); err != nil {
		return fmt.Errorf("issue: %w", err)
	}
	return issueTo(dir, NodeCertFile(dir, node), NodeKeyFile(dir, node), node, validity, now,
		func(ca *authority) (*x509.Certificate, *ecdsa.PrivateKey, error) {
			return newNodeCert(ca, node, validity, now)
		})
}

// issueTo checks validity, reads the CA from dir, has mint make a
// certificate with it and writes the pair to certPath and keyPath.
func issueTo(dir, certPath, keyPath, what string, validity time.Duration, now time.Time,
	mint func(*authority) (*x509.Certificate, *ecdsa.PrivateKey, error)) error {
	if validity <= 0 {
		return fmt.Errorf("issue %s: validity %v must be positive", what, validity)
	}
	ca, err := loadCA(dir)
	if err != nil {
		return fmt.Errorf("issue %s: %w", what, err)
	}
	leaf, key, err := mint(ca)
	if err != nil {
		return fmt.Errorf("issue %s: %w", what, err)
	}
	keyPEM, err := encodeKeyPEM(key)
	if err != nil {
		return fmt.Errorf("issue %s: %w", what, err)
	}
	// Key first: a reader that sees the new key with the old certificate
	// finds a mismatch and keeps its old material until the certificate lands.
	if err := writeReplace(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("issue %s: %w", what, err)
	}
	if err := writeReplace(certPath, encodeCertPEM(leaf.Raw), 0o644); err != nil {
		return fmt.Errorf("issue %s: %w", what, err)
	}
	return nil
}

// authority is a CA certificate with its private key.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// newCA creates a self-signed CA.
func newCA(validity time.Duration, now time.Time) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ca key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "anyedge backbone CA " + serial.Text(16)[:8]},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse ca certificate: %w", err)
	}
	return &authority{cert: cert, key: key}, nil
}

// newNodeCert issues a certificate for node signed by ca.
func newNodeCert(ca *authority, node string, validity time.Duration, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	return newLeaf(ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: node},
		DNSNames:    []string{node},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, validity, now)
}

// newLeaf completes tmpl (serial, validity clamped to the CA's, key usage)
// and signs it with ca for a fresh key.
func newLeaf(ca *authority, tmpl *x509.Certificate, validity time.Duration, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, key, nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// loadCA reads ca.key and the certificate in ca.crt that matches it (ca.crt
// may hold several CAs while one is being rotated out).
func loadCA(dir string) (*authority, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read ca: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read ca: %w", err)
	}
	certs, err := parseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	for _, c := range certs {
		if c.IsCA && bytes.Equal(c.RawSubjectPublicKeyInfo, pub) {
			return &authority{cert: c, key: key}, nil
		}
	}
	return nil, fmt.Errorf("no CA certificate in %s matches the key in %s", certPath, keyPath)
}

// parseCertsPEM decodes every CERTIFICATE block in data; there must be at
// least one and nothing but certificates.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q, want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(data)) != 0 {
		return nil, errors.New("trailing data after the last PEM block")
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

// parseKeyPEM decodes one PKCS#8, EC or PKCS#1 private key.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q, want PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", key)
	}
	return s, nil
}

func encodeCertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeNew creates path with perm, failing if it exists.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if err := finish(f, data, perm); err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// writeReplace atomically replaces path with data and perm: readers see either
// the old or the new content, never a partial file.
func writeReplace(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if err := finish(f, data, perm); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return nil
}

// finish sets perm (independent of the umask), writes data, syncs and closes f.
func finish(f *os.File, data []byte, perm os.FileMode) error {
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return nil
}
