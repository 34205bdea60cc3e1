package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestInitCAAndIssuePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Now()
	require.NoError(t, InitCA(dir, DefaultCAValidity, now))
	require.NoError(t, Issue(dir, "pop1", DefaultNodeValidity, now))
	require.NoError(t, Issue(dir, "pop1", DefaultNodeValidity, now)) // re-issue keeps modes

	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{filepath.Join(dir, CAKeyFile), 0o600},
		{filepath.Join(dir, CACertFile), 0o644},
		{NodeKeyFile(dir, "pop1"), 0o600},
		{NodeCertFile(dir, "pop1"), 0o644},
	} {
		fi, err := os.Stat(tc.path)
		require.NoError(t, err)
		require.Equal(t, tc.mode, fi.Mode(), tc.path)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 4, "no temporary files left behind")

	pair, err := tls.LoadX509KeyPair(NodeCertFile(dir, "pop1"), NodeKeyFile(dir, "pop1"))
	require.NoError(t, err)
	leaf := pair.Leaf
	require.Equal(t, "pop1", leaf.Subject.CommonName)
	require.Equal(t, []string{"pop1"}, leaf.DNSNames)
	require.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	require.False(t, leaf.IsCA)
	ca, err := loadCA(dir)
	require.NoError(t, err)
	require.NoError(t, leaf.CheckSignatureFrom(ca.cert))
	require.WithinDuration(t, now.Add(DefaultNodeValidity), leaf.NotAfter, time.Second)
}

func TestInitCARefusesOverwrite(t *testing.T) {
	for _, existing := range []string{CACertFile, CAKeyFile} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, existing)
			require.NoError(t, os.WriteFile(p, []byte("keep me"), 0o600))
			err := InitCA(dir, time.Hour, time.Now())
			require.ErrorContains(t, err, p)
			require.ErrorContains(t, err, "refusing to overwrite")
			got, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, "keep me", string(got))
		})
	}
	t.Run("second init", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, InitCA(dir, time.Hour, time.Now()))
		before, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
		require.NoError(t, err)
		require.ErrorContains(t, InitCA(dir, time.Hour, time.Now()), filepath.Join(dir, CACertFile))
		after, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
		require.NoError(t, err)
		require.Equal(t, before, after)
	})
}

func TestIssueErrors(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, InitCA(dir, time.Hour, time.Now()))
	for _, tc := range []struct {
		name, node string
		validity   time.Duration
		dir        string
		want       string
	}{
		{"reserved name", "ca", time.Hour, dir, "reserved"},
		{"path", "../pop1", time.Hour, dir, "empty label"},
		{"slash", "x/pop1", time.Hour, dir, "only lowercase"},
		{"upper case", "Pop1", time.Hour, dir, "only lowercase"},
		{"empty", "", time.Hour, dir, "empty node name"},
		{"leading dash", "-pop", time.Hour, dir, "starts or ends"},
		{"zero validity", "pop1", 0, dir, "must be positive"},
		{"no ca", "pop1", time.Hour, t.TempDir(), CACertFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorContains(t, Issue(tc.dir, tc.node, tc.validity, time.Now()), tc.want)
		})
	}
}

func TestIssueClampsToCAExpiry(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	require.NoError(t, InitCA(dir, time.Hour, now))
	require.NoError(t, Issue(dir, "pop1", DefaultNodeValidity, now))
	pair, err := tls.LoadX509KeyPair(NodeCertFile(dir, "pop1"), NodeKeyFile(dir, "pop1"))
	require.NoError(t, err)
	ca, err := loadCA(dir)
	require.NoError(t, err)
	require.Equal(t, ca.cert.NotAfter, pair.Leaf.NotAfter)
}

// TestValidNodeName pins the rule docs/pki.md and README state: a
// lower-case DNS name — letters a–z, digits and '-' in dot-separated
// labels of 1–63 characters that neither start nor end with '-', 253
// characters in all — other than "ca"; operator names follow the same
// rule.
func TestValidNodeName(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(label63+".", 3) + strings.Repeat("b", 61) // 3×64 + 61
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"pop1", true},
		{"fra-1.pops.example", true},
		{"a", true},
		{"1", true},
		{"0-9.x", true},
		{"ca.example", true},
		{label63, true},
		{label63 + "a", false},
		{name253, true},
		{name253 + "b", false},
		{"ca", false},
		{"", false},
		{"a..b", false},
		{".a", false},
		{"a.", false},
		{"Pop1", false},
		{"pop_1", false},
		{"pop/1", false},
		{"pöp", false},
		{"x-", false},
		{"-x", false},
		{"a.-x.b", false},
		{string(make([]byte, 300)), false},
	} {
		err := ValidNodeName(tc.name)
		require.Equal(t, tc.ok, err == nil, "%q: %v", tc.name, err)
		oerr := ValidOperatorName(tc.name)
		require.Equal(t, tc.ok, oerr == nil, "operator %q: %v", tc.name, oerr)
	}
}

func TestRejectReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("x: %w", ErrNoCertificate), "no_certificate"},
		{fmt.Errorf("x: %w", ErrExpired), "expired"},
		{fmt.Errorf("x: %w", ErrSelfSigned), "self_signed"},
		{fmt.Errorf("x: %w", ErrUnknownAuthority), "unknown_authority"},
		{fmt.Errorf("%w %q", ErrUnknownNode, "x"), "unknown_node"},
		{fmt.Errorf("x: %w", ErrWrongName), "wrong_name"},
		{fmt.Errorf("x: %w", ErrBadCertificate), "bad_certificate"},
		{errors.New("boom"), "other"},
	} {
		require.Equal(t, tc.want, RejectReason(tc.err))
	}
}

func FuzzParseCertsPEM(f *testing.F) {
	dir := f.TempDir()
	if err := InitCA(dir, time.Hour, time.Now()); err != nil {
		f.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca)
	f.Add(append(append([]byte{}, ca...), ca...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := parseCertsPEM(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificates")
		}
		_, _ = parseKeyPEM(data)
	})
}
