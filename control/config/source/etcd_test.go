package source_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/config/source"
	"github.com/anyedge/anyedge/internal/testcert"
	"github.com/anyedge/anyedge/internal/testetcd"
	"github.com/anyedge/anyedge/internal/testport"
)

func TestParseEtcd(t *testing.T) {
	tg, err := source.ParseEtcd("etcd://10.0.0.1:2379,10.0.0.2:2379/anyedge/fleet?ca=/e/ca.pem&cert=/e/c.pem&key=/e/k.pem")
	require.NoError(t, err)
	require.Equal(t, source.EtcdTarget{Endpoints: []string{"10.0.0.1:2379", "10.0.0.2:2379"}, Key: "/anyedge/fleet",
		CAFile: "/e/ca.pem", CertFile: "/e/c.pem", KeyFile: "/e/k.pem"}, tg)
	require.Equal(t, "etcd://10.0.0.1:2379,10.0.0.2:2379/anyedge/fleet", tg.String())
	for in, want := range map[string]string{
		"etcd://h:1":               "no key",
		"etcd://h:1/":              "no key",
		"etcd://h/k":               `endpoint "h": want HOST:PORT`,
		"etcd://h:1,/k":            `endpoint "": want HOST:PORT`,
		"etcd://h:1/k?user=x":      `unknown option "user"`,
		"etcd://h:1/k?cert=c.pem":  "cert and key go together",
		"file:///etc/anyedge.yaml": "want etcd://",
	} {
		_, err := source.ParseEtcd(in)
		require.ErrorContains(t, err, want, in)
	}
}

// etcdSource starts a source on key of the etcd member.
func etcdSource(t *testing.T, endpoint, key string) *source.Etcd {
	t.Helper()
	tg, err := source.ParseEtcd("etcd://" + endpoint + key)
	require.NoError(t, err)
	e := &source.Etcd{Target: tg, Options: config.LoadOptions{Env: []string{}}, Probe: 200 * time.Millisecond}
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

// put writes text to key as `anyedge config push` does: after a read,
// at the revision read.
func put(t *testing.T, endpoint, key, text string) int64 {
	t.Helper()
	tg, err := source.ParseEtcd("etcd://" + endpoint + key)
	require.NoError(t, err)
	c, err := tg.Client()
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := source.GetEtcd(ctx, c, key)
	if !errors.Is(err, source.ErrNoKey) {
		require.NoError(t, err)
	}
	rev, err := source.PutEtcd(ctx, c, key, []byte(text), d.ModRevision)
	require.NoError(t, err)
	return rev
}

func weightOf(u config.Update) int {
	return *u.Loaded.Doc.Accelerators[0].Listeners[0].EndpointGroups[0].Endpoints[0].Weight
}

// TestEtcd runs a real etcd member: the source loads the key, sends
// every write, an invalid one and a deletion as errors, keeps going
// while the member is killed, and after its restart picks up a write
// made while it was down.
func TestEtcd(t *testing.T) {
	srv := testetcd.Start(t)
	const key = "/anyedge/fleet"
	e := etcdSource(t, srv.Endpoint(), key)
	_, err := e.Load()
	require.ErrorContains(t, err, "the key does not exist (write it with anyedge config push FILE etcd://"+srv.Endpoint()+key+")")

	put(t, srv.Endpoint(), key, doc(100))
	e = etcdSource(t, srv.Endpoint(), key)
	l, err := e.Load()
	require.NoError(t, err)
	require.Equal(t, config.RevisionOf([]byte(doc(100))), l.Revision)
	require.True(t, e.Status().Connected)
	require.Equal(t, "etcd etcd://"+srv.Endpoint()+key, e.String())

	out := make(chan config.Update)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, e.Run(ctx, l, out)) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	// A write reaches the source.
	mod := put(t, srv.Endpoint(), key, doc(7))
	u := next(t, out)
	require.NoError(t, u.Err)
	require.Equal(t, "etcd watch", u.Trigger)
	require.Equal(t, 7, weightOf(u))
	require.Equal(t, mod, e.Status().ModRevision)

	// An invalid document written to the key: the error comes through.
	put(t, srv.Endpoint(), key, "accelerators: 1\n")
	require.ErrorContains(t, next(t, out).Err, "accelerators")

	// The member dies: the source says so; a write made after its
	// restart is picked up.
	srv.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for e.Status().Connected {
		require.True(t, time.Now().Before(deadline), "the source did not notice that etcd is gone")
		time.Sleep(20 * time.Millisecond)
	}
	st := e.Status()
	require.Equal(t, uint64(1), st.Disconnects)
	require.NotEmpty(t, st.LastError)
	srv.Restart()
	put(t, srv.Endpoint(), key, doc(9))
	u = next(t, out)
	require.NoError(t, u.Err)
	require.Equal(t, 9, weightOf(u))
	require.True(t, e.Status().Connected)

	// Watched again after the restart.
	put(t, srv.Endpoint(), key, doc(110))
	require.Equal(t, 110, weightOf(next(t, out)))
}

// TestEtcdPushConflict: two operators push from the same reading; the
// second is refused with the revision the first wrote.
func TestEtcdPushConflict(t *testing.T) {
	srv := testetcd.Start(t)
	const key = "/fleet"
	base := put(t, srv.Endpoint(), key, doc(1))
	tg, err := source.ParseEtcd("etcd://" + srv.Endpoint() + key)
	require.NoError(t, err)
	c, err := tg.Client()
	require.NoError(t, err)
	defer c.Close()
	ctx := t.Context()
	first, err := source.PutEtcd(ctx, c, key, []byte(doc(2)), base)
	require.NoError(t, err)
	_, err = source.PutEtcd(ctx, c, key, []byte(doc(3)), base)
	var ce *source.ConflictError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, first, ce.Found)
	require.Equal(t, config.RevisionOf([]byte(doc(2))), ce.Document)
	require.ErrorContains(t, err, fmt.Sprintf("etcd key /fleet was written at mod revision %d (document revision %s), not %d as expected",
		first, ce.Document, base))
	d, err := source.GetEtcd(ctx, c, key)
	require.NoError(t, err)
	require.Equal(t, doc(2), string(d.Value), "the second push wrote nothing")
	// Expecting no key where there is one: refused too.
	_, err = source.PutEtcd(ctx, c, key, []byte(doc(3)), 0)
	require.ErrorAs(t, err, &ce)
}

// TestEtcdUnreachable: start-up with no etcd fails after the bounded
// wait, naming the endpoint and the key.
func TestEtcdUnreachable(t *testing.T) {
	endpoint := fmt.Sprintf("127.0.0.1:%d", testport.Port(t))
	e := etcdSource(t, endpoint, "/fleet")
	e.StartTimeout = 500 * time.Millisecond
	_, err := e.Load()
	require.ErrorContains(t, err, "etcd etcd://"+endpoint+"/fleet: cannot read the key within 500ms")
}

// FuzzParseEtcd: any address ParseEtcd accepts has endpoints of the form
// HOST:PORT and a key with its slash, and its String parses back to the
// same endpoints and key.
func FuzzParseEtcd(f *testing.F) {
	for _, s := range []string{"etcd://127.0.0.1:2379/anyedge/fleet", "etcd://a:1,b:2/k?ca=/c&cert=/x&key=/y",
		"etcd://h:1/", "etcd://h/k", "etcd://h:1/k?%zz", "etcd://[::1]:2379/k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := source.ParseEtcd(s)
		if err != nil {
			return
		}
		require.NotEmpty(t, tg.Endpoints)
		for _, e := range tg.Endpoints {
			require.Contains(t, e, ":")
		}
		require.True(t, len(tg.Key) > 1 && tg.Key[0] == '/', tg.Key)
		back, err := source.ParseEtcd(tg.String())
		require.NoError(t, err, tg.String())
		require.Equal(t, tg.Endpoints, back.Endpoints)
		require.Equal(t, tg.Key, back.Key)
	})
}

// TestEtcdTLS: a member that speaks TLS and wants client certificates;
// the address's ca, cert and key options reach it, and without a client
// certificate the read fails, naming the key.
func TestEtcdTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	srv := testetcd.StartTLS(t, ca)
	client := ca.Issue(t, "operator", testcert.Leaf{Names: []string{"operator"}, Client: true})
	addr := fmt.Sprintf("etcd://%s/fleet?ca=%s&cert=%s&key=%s", srv.Endpoint(), ca.File, client.CertFile, client.KeyFile)
	tg, err := source.ParseEtcd(addr)
	require.NoError(t, err)
	c, err := tg.Client()
	require.NoError(t, err)
	defer c.Close()
	_, err = source.PutEtcd(t.Context(), c, tg.Key, []byte(doc(5)), 0)
	require.NoError(t, err)
	e := &source.Etcd{Target: tg, Options: config.LoadOptions{Env: []string{}}}
	defer e.Close()
	l, err := e.Load()
	require.NoError(t, err)
	require.Equal(t, config.RevisionOf([]byte(doc(5))), l.Revision)

	// The CA alone: the member wants a client certificate.
	tg.CertFile, tg.KeyFile = "", ""
	e = &source.Etcd{Target: tg, Options: config.LoadOptions{Env: []string{}}, StartTimeout: time.Second}
	defer e.Close()
	_, err = e.Load()
	require.ErrorContains(t, err, "etcd etcd://"+srv.Endpoint()+"/fleet: cannot read the key within 1s")

	// A CA file that is not one.
	tg.CAFile = client.KeyFile
	_, err = tg.Client()
	require.ErrorContains(t, err, "holds no PEM certificate")
}
