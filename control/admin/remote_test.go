package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/pki"
)

// logBuffer is a slog destination the test reads.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.SplitSeq(l.b.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// remoteFixture is a node "pop1" serving its admin API on loopback and on a
// remote address with mutual TLS, and the credentials of the test cases.
type remoteFixture struct {
	dir          string
	local, rem   string
	logs         *logBuffer
	node         *fakeNode
	reader, boss *pki.OperatorClient
}

func newRemoteFixture(t *testing.T) *remoteFixture {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	require.NoError(t, pki.InitCA(dir, pki.DefaultCAValidity, now))
	require.NoError(t, pki.Issue(dir, "pop1", pki.DefaultNodeValidity, now))
	require.NoError(t, pki.IssueOperator(dir, "reader", pki.RoleRead, time.Hour, now))
	require.NoError(t, pki.IssueOperator(dir, "boss", pki.RoleAdmin, time.Hour, now))
	store, err := pki.OpenStore(dir, "pop1", nil)
	require.NoError(t, err)
	f := &remoteFixture{dir: dir, logs: &logBuffer{}, node: &fakeNode{ready: true}}
	f.reader = f.operator(t, dir, "reader")
	f.boss = f.operator(t, dir, "boss")

	log := slog.New(slog.NewTextHandler(f.logs, nil))
	s := start(t, Options{Addr: "127.0.0.1:0", Remote: "127.0.0.1:0", Store: store, Node: f.node,
		Registry: prometheus.NewRegistry(), Logger: log})
	f.local, f.rem = s.Addr(), s.RemoteAddr()
	return f
}

// operator loads the credentials of operator name issued in dir, trusting
// the fixture's CA.
func (f *remoteFixture) operator(t *testing.T, dir, name string) *pki.OperatorClient {
	t.Helper()
	c, err := pki.LoadOperator(pki.OperatorCertFile(dir, name), pki.OperatorKeyFile(dir, name), filepath.Join(f.dir, pki.CACertFile))
	require.NoError(t, err)
	return c
}

// call sends command to the remote address over cfg.
func (f *remoteFixture) call(t *testing.T, cfg *tls.Config, command string) (string, error) {
	t.Helper()
	c := NewClient(f.rem, cfg)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Call(ctx, command)
}

// TestRemoteAccess: the remote admin address admits operators of the
// fleet's CA only, reads for any role, state changes for admins only; each
// refusal is a 401 or 403, a log line and a count. Loopback stays open.
func TestRemoteAccess(t *testing.T) {
	f := newRemoteFixture(t)
	now := time.Now()

	other := t.TempDir()
	require.NoError(t, pki.InitCA(other, time.Hour, now))
	require.NoError(t, pki.IssueOperator(other, "mallory", pki.RoleAdmin, time.Hour, now))
	require.NoError(t, pki.IssueOperator(f.dir, "former", pki.RoleAdmin, time.Hour, now.Add(-2*time.Hour)))
	nodePair, err := tls.LoadX509KeyPair(pki.NodeCertFile(f.dir, "pop1"), pki.NodeKeyFile(f.dir, "pop1"))
	require.NoError(t, err)

	noCert := f.reader.TLSConfig("pop1")
	noCert.Certificates = nil
	nodeCert := f.reader.TLSConfig("pop1")
	nodeCert.Certificates = []tls.Certificate{nodePair}

	for _, tc := range []struct {
		name    string
		cfg     *tls.Config
		command string
		status  string // "" for success
		reason  string
	}{
		{"no certificate", noCert, "status", "401 Unauthorized", "no_certificate"},
		{"certificate from another CA", f.operator(t, other, "mallory").TLSConfig("pop1"), "status", "401 Unauthorized", "unknown_authority"},
		{"expired certificate", f.operator(t, f.dir, "former").TLSConfig("pop1"), "status", "401 Unauthorized", "expired"},
		{"node certificate instead of an operator's", nodeCert, "status", "403 Forbidden", "not_operator"},
		{"read-only operator drains", f.reader.TLSConfig("pop1"), "drain", "403 Forbidden", "read_only"},
		{"read-only operator reads", f.reader.TLSConfig("pop1"), "status", "", ""},
		{"admin operator drains", f.boss.TLSConfig("pop1"), "drain", "", ""},
		{"admin operator undrains", f.boss.TLSConfig("pop1"), "undrain", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.logs.lines("admin request refused"))
			out, err := f.call(t, tc.cfg, tc.command)
			if tc.status == "" {
				require.NoError(t, err)
				require.NotEmpty(t, out)
				require.Len(t, f.logs.lines("admin request refused"), before)
				return
			}
			require.ErrorContains(t, err, tc.status)
			require.ErrorContains(t, err, tc.reason, "the answer says why")
			lines := f.logs.lines("admin request refused")
			require.Len(t, lines, before+1, "one log line per refusal")
			require.Contains(t, lines[len(lines)-1], "reason="+tc.reason)
		})
	}
	f.node.mu.Lock()
	draining := f.node.draining
	f.node.mu.Unlock()
	require.False(t, draining, "the refused drain changed nothing; the admin's drain was undone")
	require.Len(t, f.logs.lines(`msg="admin command" component=admin command=drain by="operator boss"`), 1, "state changes are logged with the operator")

	// Loopback is plain HTTP and needs no certificate.
	ctx := context.Background()
	out, err := Call(ctx, f.local, "drain")
	require.NoError(t, err)
	require.Equal(t, "ok\n", out)
	require.Len(t, f.logs.lines(`msg="admin command" component=admin command=drain by=local`), 1)
	metrics, err := get(ctx, "http://"+f.local+"/metrics")
	require.NoError(t, err)
	for _, reason := range []string{"no_certificate", "unknown_authority", "expired", "not_operator", "read_only"} {
		require.Contains(t, metrics, `anyedge_admin_requests_refused_total{reason="`+reason+`"} 1`)
	}
}

// TestRemoteRefusalLogIsRateLimited: a burst of refusals for one reason
// logs one line (internal/ratelog), and every one is counted.
func TestRemoteRefusalLogIsRateLimited(t *testing.T) {
	f := newRemoteFixture(t)
	noCert := f.reader.TLSConfig("pop1")
	noCert.Certificates = nil
	for range 5 {
		_, err := f.call(t, noCert, "status")
		require.ErrorContains(t, err, "401")
	}
	_, err := f.call(t, f.reader.TLSConfig("pop1"), "drain")
	require.ErrorContains(t, err, "403")
	lines := f.logs.lines("admin request refused")
	require.Len(t, lines, 2, "one line per reason within ratelog.Every: %v", lines)
	require.Contains(t, lines[0], "reason=no_certificate")
	require.Contains(t, lines[1], "reason=read_only")
	metrics, err := get(context.Background(), "http://"+f.local+"/metrics")
	require.NoError(t, err)
	require.Contains(t, metrics, `anyedge_admin_requests_refused_total{reason="no_certificate"} 5`)
}

// TestRemoteNeedsStore: a remote address without certificates is a
// configuration error, not an open door.
func TestRemoteNeedsStore(t *testing.T) {
	_, err := Listen(Options{Addr: "127.0.0.1:0", Remote: "127.0.0.1:0", Node: &fakeNode{}})
	require.ErrorContains(t, err, "needs the node's certificates")
}

// TestProfiles: Go's profiles are served on loopback, and remotely only to
// an operator with the admin role (a CPU profile keeps the node busy for as
// long as the caller asks).
func TestProfiles(t *testing.T) {
	f := newRemoteFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	out, err := get(ctx, "http://"+f.local+ProfilePath+"goroutine?debug=1")
	require.NoError(t, err)
	require.Contains(t, out, "goroutine profile:", "loopback serves the profiles")

	reader := NewClient(f.rem, f.reader.TLSConfig("pop1"))
	defer reader.Close()
	_, err = reader.Get(ctx, ProfilePath+"goroutine?debug=1")
	require.ErrorContains(t, err, "403 Forbidden")
	require.ErrorContains(t, err, "read_only")
	lines := f.logs.lines("admin request refused")
	require.NotEmpty(t, lines)
	require.Contains(t, lines[len(lines)-1], "reason=read_only")

	boss := NewClient(f.rem, f.boss.TLSConfig("pop1"))
	defer boss.Close()
	body, err := boss.Get(ctx, ProfilePath+"heap?debug=1")
	require.NoError(t, err)
	require.Contains(t, string(body), "heap profile:", "an admin operator gets the profiles remotely")
	body, err = boss.Get(ctx, ProfilePath+"profile?seconds=1")
	require.NoError(t, err)
	require.NotEmpty(t, body, "a CPU profile")
}
