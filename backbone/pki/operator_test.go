package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// peerState is the connection state of a peer that presented pair.
func peerState(t *testing.T, certFile, keyFile string) tls.ConnectionState {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	return tls.ConnectionState{PeerCertificates: []*x509.Certificate{pair.Leaf}}
}

func TestIssueOperator(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	require.NoError(t, IssueOperator(f.dir, "alice", RoleAdmin, DefaultOperatorValidity, now))
	for path, mode := range map[string]os.FileMode{
		OperatorCertFile(f.dir, "alice"): 0o644,
		OperatorKeyFile(f.dir, "alice"):  0o600,
	} {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, mode, fi.Mode(), path)
	}
	pair, err := tls.LoadX509KeyPair(OperatorCertFile(f.dir, "alice"), OperatorKeyFile(f.dir, "alice"))
	require.NoError(t, err)
	require.Empty(t, pair.Leaf.DNSNames, "an operator certificate must not pass for a node")
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, pair.Leaf.ExtKeyUsage)
	require.Equal(t, "anyedge://operator/alice?role=admin", pair.Leaf.URIs[0].String())
	require.WithinDuration(t, now.Add(DefaultOperatorValidity), pair.Leaf.NotAfter, time.Second)

	require.ErrorContains(t, IssueOperator(f.dir, "Alice", RoleRead, time.Hour, now), `operator name "Alice"`)
	require.ErrorContains(t, IssueOperator(f.dir, "bob", Role("root"), time.Hour, now), `role "root": want read or admin`)
	require.ErrorContains(t, IssueOperator(t.TempDir(), "bob", RoleRead, time.Hour, now), "read ca")
}

func TestVerifyOperator(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	require.NoError(t, IssueOperator(f.dir, "reader", RoleRead, time.Hour, now))
	require.NoError(t, IssueOperator(f.dir, "admin1", RoleAdmin, time.Hour, now))
	require.NoError(t, IssueOperator(f.dir, "old", RoleAdmin, time.Hour, now.Add(-3*time.Hour)))
	other := t.TempDir()
	require.NoError(t, InitCA(other, time.Hour, now))
	require.NoError(t, IssueOperator(other, "mallory", RoleAdmin, time.Hour, now))

	op, err := f.region.VerifyOperator(peerState(t, OperatorCertFile(f.dir, "reader"), OperatorKeyFile(f.dir, "reader")))
	require.NoError(t, err)
	require.Equal(t, Operator{Name: "reader", Role: RoleRead}, op)
	op, err = f.region.VerifyOperator(peerState(t, OperatorCertFile(f.dir, "admin1"), OperatorKeyFile(f.dir, "admin1")))
	require.NoError(t, err)
	require.Equal(t, Operator{Name: "admin1", Role: RoleAdmin}, op)

	for _, tc := range []struct {
		name   string
		cs     tls.ConnectionState
		reason string
	}{
		{"none", tls.ConnectionState{}, "no_certificate"},
		{"expired", peerState(t, OperatorCertFile(f.dir, "old"), OperatorKeyFile(f.dir, "old")), "expired"},
		{"other CA", peerState(t, OperatorCertFile(other, "mallory"), OperatorKeyFile(other, "mallory")), "unknown_authority"},
		{"node", peerState(t, NodeCertFile(f.dir, "pop1"), NodeKeyFile(f.dir, "pop1")), "not_operator"},
	} {
		_, err := f.region.VerifyOperator(tc.cs)
		require.Error(t, err, tc.name)
		require.Equal(t, tc.reason, RejectReason(err), "%s: %v", tc.name, err)
	}

	// And the other way round: the backbone refuses an operator.
	_, err = verifyPeer(f.region.cur.Load().pool, peerState(t, OperatorCertFile(f.dir, "admin1"), OperatorKeyFile(f.dir, "admin1")),
		x509.ExtKeyUsageClientAuth, "", func(string) bool { return true })
	require.Equal(t, "bad_certificate", RejectReason(err), "%v", err)
}

func TestLoadOperator(t *testing.T) {
	f := newFixture(t)
	require.NoError(t, IssueOperator(f.dir, "alice", RoleRead, time.Hour, time.Now()))
	ca := f.dir + "/" + CACertFile
	c, err := LoadOperator(OperatorCertFile(f.dir, "alice"), OperatorKeyFile(f.dir, "alice"), ca)
	require.NoError(t, err)
	require.Equal(t, Operator{Name: "alice", Role: RoleRead}, c.Operator())

	_, err = LoadOperator(NodeCertFile(f.dir, "pop1"), NodeKeyFile(f.dir, "pop1"), ca)
	require.ErrorIs(t, err, ErrNotOperator, "a node certificate is no operator credential")
	_, err = LoadOperator(OperatorCertFile(f.dir, "alice"), OperatorKeyFile(f.dir, "alice"), OperatorCertFile(f.dir, "alice"))
	require.ErrorContains(t, err, "operator credentials")
}

// TestOperatorTLS runs real TLS handshakes between an operator client and
// the admin server configuration, and checks the client's view of the
// server's certificate.
func TestOperatorTLS(t *testing.T) {
	f := newFixture(t)
	require.NoError(t, IssueOperator(f.dir, "alice", RoleRead, time.Hour, time.Now()))
	c, err := LoadOperator(OperatorCertFile(f.dir, "alice"), OperatorKeyFile(f.dir, "alice"), f.dir+"/"+CACertFile)
	require.NoError(t, err)
	other := t.TempDir()
	require.NoError(t, InitCA(other, time.Hour, time.Now()))
	require.NoError(t, Issue(other, "region1", time.Hour, time.Now()))
	impostor, err := OpenStore(other, "region1", nil)
	require.NoError(t, err)

	handshake := func(server *Store, node string) (Operator, error) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		srv := tls.Server(a, AdminServerConfig(server))
		done := make(chan error, 1)
		var op Operator
		go func() {
			err := srv.Handshake()
			if err == nil {
				op, err = server.VerifyOperator(srv.ConnectionState())
			}
			done <- err
		}()
		err := tls.Client(b, c.TLSConfig(node)).Handshake()
		if err != nil {
			_ = b.Close()
			<-done
			return Operator{}, err
		}
		return op, <-done
	}
	op, err := handshake(f.region, "region1")
	require.NoError(t, err)
	require.Equal(t, "alice", op.Name)
	_, err = handshake(f.region, "")
	require.NoError(t, err, "no node name: any node of the fleet")
	_, err = handshake(f.region, "pop1")
	require.ErrorIs(t, err, ErrWrongName)
	_, err = handshake(impostor, "region1")
	require.ErrorIs(t, err, ErrUnknownAuthority)
}
