package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/config/source"
	"github.com/anyedge/anyedge/internal/testetcd"
	"github.com/anyedge/anyedge/internal/testport"
)

// etcdStatus is the part of /status TestEtcdBinary reads.
type etcdStatus struct {
	Config struct {
		Revision    string               `json:"revision"`
		Source      string               `json:"source"`
		SourceState *config.SourceStatus `json:"source_state"`
		Reloads     map[string]uint64    `json:"reloads"`
		LastError   *struct {
			Trigger string `json:"trigger"`
			Error   string `json:"error"`
		} `json:"last_error"`
	} `json:"config"`
}

// TestEtcdBinary runs a region and an edge as `anyedge` processes whose
// document lives in a real etcd, and changes it the ways operators do:
// `config push` of a new weight (applied), of an invalid file (refused
// by push), an invalid document written to the key by hand (the node
// keeps its document and says why), two pushes from the same reading
// (the second refused), and etcd killed and restarted (the node serves
// on, reports the loss, and takes a push made after the restart).
func TestEtcdBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/anyedge")
	}
	srv := testetcd.Start(t)
	f := newBinFleet(t)
	doc, popAdmin, port := f.doc, f.popAdmin, f.port
	key := "etcd://" + srv.Endpoint() + "/anyedge/fleet"
	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	push := func(text string, flags ...string) (int, string) {
		code, out, errOut := cli(append(append([]string{"config", "push"}, flags...), writeTemp(t, text), key)...)
		return code, out + errOut
	}
	code, out := push(doc(128), "--expect-revision", "0")
	require.Equal(t, exitOK, code, out)

	f.start(t, key)
	status := func() (etcdStatus, error) { return getStatus[etcdStatus](popAdmin) }
	wait := func(what string, cond func(etcdStatus) bool) etcdStatus {
		t.Helper()
		return waitFor(t, what, status, cond)
	}
	serves := func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line == "ok\n"
	}
	rev := func(text string) string { return string(config.RevisionOf([]byte(text))) }

	st := wait("edge up from etcd", func(st etcdStatus) bool { return st.Config.Revision != "" })
	require.Equal(t, rev(doc(128)), st.Config.Revision)
	require.Equal(t, "etcd "+key, st.Config.Source)
	require.True(t, st.Config.SourceState.Connected)
	require.Eventually(t, serves, 20*time.Second, 50*time.Millisecond, "the edge does not serve")

	// A push that changes a weight reaches the running node.
	code, out = push(doc(7))
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "document revision "+rev(doc(7)))
	st = wait("push applied", func(st etcdStatus) bool { return st.Config.Revision == rev(doc(7)) })

	// get prints the document and its revisions.
	code, got, info := cli("config", "get", key)
	require.Equal(t, exitOK, code, info)
	require.Equal(t, doc(7), got)
	require.Contains(t, info, "; document revision "+rev(doc(7)))
	require.Contains(t, info, fmt.Sprintf("mod_revision %d,", st.Config.SourceState.ModRevision))
	read := st.Config.SourceState.ModRevision

	// An invalid file: push refuses it and writes nothing.
	code, out = push(strings.Replace(doc(7), "weight: 7", "weight: 700", 1))
	require.Equal(t, exitConfig, code)
	require.Contains(t, out, "weight: 700 is outside 0–255")
	require.Contains(t, out, "is invalid; nothing was written")

	// Two operators push from the same reading: the second is refused,
	// naming the revision the first wrote.
	code, out = push(doc(8), "--expect-revision", fmt.Sprint(read))
	require.Equal(t, exitOK, code, out)
	st = wait("first push applied", func(st etcdStatus) bool { return st.Config.Revision == rev(doc(8)) })
	code, out = push(doc(6), "--expect-revision", fmt.Sprint(read))
	require.Equal(t, exitFail, code)
	require.Contains(t, out, fmt.Sprintf("was written at mod revision %d (document revision %s), not %d as expected",
		st.Config.SourceState.ModRevision, rev(doc(8)), read))

	// An invalid document written to the key by hand: the node keeps
	// its document and says why.
	tg, err := source.ParseEtcd(key)
	require.NoError(t, err)
	c, err := tg.Client()
	require.NoError(t, err)
	defer c.Close()
	_, err = source.PutEtcd(t.Context(), c, tg.Key, []byte(strings.Replace(doc(8), "weight: 8", "weight: 900", 1)), st.Config.SourceState.ModRevision)
	require.NoError(t, err)
	st = wait("invalid document shown", func(st etcdStatus) bool { return st.Config.Reloads["invalid"] == 1 })
	require.Equal(t, rev(doc(8)), st.Config.Revision)
	require.Equal(t, "etcd watch", st.Config.LastError.Trigger)
	require.Contains(t, st.Config.LastError.Error, "weight: 900 is outside 0–255")

	// etcd dies: the node serves on and says so; after the restart a
	// push reaches it.
	srv.Kill()
	st = wait("etcd loss shown", func(st etcdStatus) bool { return !st.Config.SourceState.Connected })
	require.NotEmpty(t, st.Config.SourceState.LastError)
	require.True(t, serves(), "the edge stopped serving without etcd")
	require.Equal(t, rev(doc(8)), st.Config.Revision)
	metrics := scrapeText(t, popAdmin)
	require.Contains(t, metrics, "anyedge_config_source_connected 0")
	require.Contains(t, metrics, "anyedge_config_source_disconnects_total 1")
	srv.Restart()
	code, out = push(doc(9))
	require.Equal(t, exitOK, code, out)
	st = wait("push after the restart applied", func(st etcdStatus) bool { return st.Config.Revision == rev(doc(9)) })
	require.True(t, st.Config.SourceState.Connected)
	require.True(t, serves())
}

// scrapeText returns a node's /metrics.
func scrapeText(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestConfigPushUsage: push and get say what is wrong with their
// arguments.
func TestConfigPushUsage(t *testing.T) {
	for args, want := range map[string]string{
		"config":                                 "usage:",
		"config push only-one":                   "usage:",
		"config get a b":                         "usage:",
		"config get /etc/anyedge.yaml":           "want etcd://",
		"config get etcd://127.0.0.1:1/k?cert=c": "cert and key go together",
	} {
		var out bytes.Buffer
		require.Equal(t, exitConfig, run(strings.Fields(args), &out, &out), args)
		require.Contains(t, out.String(), want, args)
	}
	code := run([]string{"config", "push", filepath.Join(t.TempDir(), "missing.yaml"), "etcd://127.0.0.1:1/k"}, io.Discard, io.Discard)
	require.Equal(t, exitConfig, code)
}

// TestEtcdFlags: --etcd-ca, --etcd-cert and --etcd-key fill in what the
// address does not say; the address's own options win.
func TestEtcdFlags(t *testing.T) {
	f := etcdFlags{ca: "/f/ca.pem", cert: "/f/c.pem", key: "/f/k.pem"}
	tg, err := f.target("etcd://h:1/k")
	require.NoError(t, err)
	require.Equal(t, source.EtcdTarget{Endpoints: []string{"h:1"}, Key: "/k", CAFile: "/f/ca.pem", CertFile: "/f/c.pem", KeyFile: "/f/k.pem"}, tg)
	tg, err = f.target("etcd://h:1/k?ca=/a/ca.pem&cert=/a/c.pem&key=/a/k.pem")
	require.NoError(t, err)
	require.Equal(t, []string{"/a/ca.pem", "/a/c.pem", "/a/k.pem"}, []string{tg.CAFile, tg.CertFile, tg.KeyFile})
	_, err = (&etcdFlags{cert: "/f/c.pem"}).target("etcd://h:1/k")
	require.ErrorContains(t, err, "--etcd-cert and --etcd-key go together")
	var stderr bytes.Buffer
	require.Equal(t, exitConfig, run([]string{"edge", "--config", "etcd://h/k", "--node", "pop"}, io.Discard, &stderr))
	require.Contains(t, stderr.String(), `anyedge edge: --config: "etcd://h/k": endpoint "h": want HOST:PORT`)
}

// TestEtcdUnreachableAtStart: a node whose etcd does not answer gives up
// after --etcd-timeout, exit 2, naming the endpoint and the key.
func TestEtcdUnreachableAtStart(t *testing.T) {
	addr := fmt.Sprintf("etcd://127.0.0.1:%d/anyedge/fleet", testport.Port(t))
	var stderr bytes.Buffer
	require.Equal(t, exitConfig, run([]string{"region", "--config", addr, "--node", "r1", "--etcd-timeout", "300ms"}, io.Discard, &stderr))
	require.Contains(t, stderr.String(), "etcd "+addr+": cannot read the key within 300ms")
	stderr.Reset()
	require.Equal(t, exitFail, run([]string{"config", "get", addr, "--etcd-timeout", "300ms"}, io.Discard, &stderr))
	require.Contains(t, stderr.String(), "anyedge config get: "+addr+": key /anyedge/fleet: context deadline exceeded")
}
