package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/internal/ratelog"
)

// EtcdScheme begins a --config that names an etcd key.
const EtcdScheme = "etcd://"

// IsEtcd reports whether a --config value names an etcd key.
func IsEtcd(s string) bool { return strings.HasPrefix(s, EtcdScheme) }

// EtcdTarget is a key of an etcd cluster:
//
//	etcd://HOST:PORT[,HOST:PORT...]/KEY[?ca=FILE&cert=FILE&key=FILE]
//
// KEY is the path with its leading slash (etcd://h:2379/anyedge/fleet is
// the key "/anyedge/fleet"). With ca, or cert and key, the client speaks
// TLS: ca is the PEM bundle the members' certificates are checked with
// (default: the system's), cert and key a client certificate.
type EtcdTarget struct {
	Endpoints []string
	Key       string
	CAFile    string
	CertFile  string
	KeyFile   string
}

// ParseEtcd parses an etcd:// address.
func ParseEtcd(s string) (EtcdTarget, error) {
	var t EtcdTarget
	rest, ok := strings.CutPrefix(s, EtcdScheme)
	if !ok {
		return t, fmt.Errorf("%q: want etcd://HOST:PORT[,HOST:PORT...]/KEY", s)
	}
	rest, query, _ := strings.Cut(rest, "?")
	hosts, key, ok := strings.Cut(rest, "/")
	if !ok || key == "" {
		return t, fmt.Errorf("%q: no key: want etcd://HOST:PORT[,HOST:PORT...]/KEY", s)
	}
	t.Key = "/" + key
	for h := range strings.SplitSeq(hosts, ",") {
		if h == "" || !strings.Contains(h, ":") {
			return t, fmt.Errorf("%q: endpoint %q: want HOST:PORT", s, h)
		}
		t.Endpoints = append(t.Endpoints, h)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return t, fmt.Errorf("%q: %w", s, err)
	}
	for k := range q {
		switch k {
		case "ca", "cert", "key":
		default:
			return t, fmt.Errorf("%q: unknown option %q (ca, cert, key)", s, k)
		}
	}
	t.CAFile, t.CertFile, t.KeyFile = q.Get("ca"), q.Get("cert"), q.Get("key")
	if (t.CertFile == "") != (t.KeyFile == "") {
		return t, fmt.Errorf("%q: cert and key go together", s)
	}
	return t, nil
}

// String names the key and its endpoints, without the TLS files.
func (t EtcdTarget) String() string {
	return EtcdScheme + strings.Join(t.Endpoints, ",") + t.Key
}

// tlsConfig is the client's TLS configuration, or nil for plain gRPC.
func (t EtcdTarget) tlsConfig() (*tls.Config, error) {
	if t.CAFile == "" && t.CertFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd ca: %s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Client returns a client of the cluster. It connects lazily: the
// first call waits for a member (bounded by its context). Close it.
func (t EtcdTarget) Client() (*clientv3.Client, error) {
	tc, err := t.tlsConfig()
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{
		Endpoints:            t.Endpoints,
		TLS:                  tc,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(), // the source logs what matters
	})
}

// EtcdDocument is what a key holds: the document and etcd's revisions of
// it.
type EtcdDocument struct {
	Value []byte
	// ModRevision is the cluster's revision of the key's last write (0:
	// no key), CreateRevision of its creation; Version counts its writes.
	ModRevision, CreateRevision, Version int64
	// Revision is the cluster's revision when it was read.
	Revision int64
}

// ErrNoKey is returned when the key does not exist.
var ErrNoKey = errors.New("no such key")

// GetEtcd reads the key.
func GetEtcd(ctx context.Context, c *clientv3.Client, key string) (EtcdDocument, error) {
	resp, err := c.Get(ctx, key)
	if err != nil {
		return EtcdDocument{}, err
	}
	d := EtcdDocument{Revision: resp.Header.GetRevision()}
	if len(resp.Kvs) == 0 {
		return d, ErrNoKey
	}
	kv := resp.Kvs[0]
	d.Value, d.ModRevision, d.CreateRevision, d.Version = kv.Value, kv.ModRevision, kv.CreateRevision, kv.Version
	return d, nil
}

// ConflictError refuses a push: the key's mod revision is not the one
// the push expected — someone wrote it in between.
type ConflictError struct {
	Key             string
	Expected, Found int64
	// Document is the revision (config.RevisionOf) of what the key holds.
	Document config.Revision
}

func (e *ConflictError) Error() string {
	if e.Found == 0 {
		return fmt.Sprintf("etcd key %s does not exist (expected mod revision %d): nothing was written", e.Key, e.Expected)
	}
	return fmt.Sprintf("etcd key %s was written at mod revision %d (document revision %s), not %d as expected: "+
		"someone pushed in between, nothing was written; get it, merge, and push with --expect-revision %d",
		e.Key, e.Found, e.Document, e.Expected, e.Found)
}

// PutEtcd writes data to the key if its mod revision is expect (0: the
// key must not exist), in one transaction, and returns the new mod
// revision; otherwise it writes nothing and returns a *ConflictError.
func PutEtcd(ctx context.Context, c *clientv3.Client, key string, data []byte, expect int64) (int64, error) {
	resp, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expect)).
		Then(clientv3.OpPut(key, string(data))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return 0, err
	}
	if resp.Succeeded {
		return resp.Header.GetRevision(), nil
	}
	ce := &ConflictError{Key: key, Expected: expect}
	if rs := resp.Responses; len(rs) > 0 && len(rs[0].GetResponseRange().GetKvs()) > 0 {
		kv := rs[0].GetResponseRange().GetKvs()[0]
		ce.Found, ce.Document = kv.ModRevision, config.RevisionOf(kv.Value)
	}
	return 0, ce
}

// Etcd is a document in a key of an etcd cluster. Load reads it once
// (start-up); Run watches the key and sends every new value as an update,
// and reads it again after the cluster was unreachable, so that a write
// made meanwhile is not missed. While etcd cannot be reached the node
// keeps the document in force; Status says so.
type Etcd struct {
	// Target is the key.
	Target EtcdTarget
	// Options are the load options (the environment's overrides).
	Options config.LoadOptions
	// Reread, when it fires, reads the key whether or not it changed
	// (SIGHUP).
	Reread <-chan struct{}
	// Logger receives the source's events; nil discards them.
	Logger *slog.Logger
	// StartTimeout bounds Load's wait for the cluster (default 10 s).
	StartTimeout time.Duration
	// Probe is how often Run checks that the cluster answers, and how
	// long it waits between tries while it does not (default 1 s).
	Probe time.Duration

	mu       sync.Mutex // guards client
	client   *clientv3.Client
	loaded   EtcdDocument // what Load read, for Run
	status   atomic.Pointer[config.SourceStatus]
	errors   atomic.Uint64
	dropouts atomic.Uint64
}

// String names the source for /status and logs.
func (e *Etcd) String() string { return "etcd " + e.Target.String() }

func (e *Etcd) startTimeout() time.Duration {
	if e.StartTimeout > 0 {
		return e.StartTimeout
	}
	return 10 * time.Second
}

func (e *Etcd) probe() time.Duration {
	if e.Probe > 0 {
		return e.Probe
	}
	return time.Second
}

// conn returns the source's client, made at the first call.
func (e *Etcd) conn() (*clientv3.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client == nil {
		c, err := e.Target.Client()
		if err != nil {
			return nil, err
		}
		e.client = c
	}
	return e.client, nil
}

// Close closes the source's client. It is safe to call more than once.
func (e *Etcd) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client == nil {
		return nil
	}
	err := e.client.Close()
	e.client = nil
	return err
}

// Load reads and parses the key once (start-up). It waits at most
// StartTimeout for the cluster; an error names the endpoints and the key.
func (e *Etcd) Load() (config.Loaded, error) {
	c, err := e.conn()
	if err != nil {
		return config.Loaded{}, fmt.Errorf("%s: %w", e, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.startTimeout())
	defer cancel()
	d, err := GetEtcd(ctx, c, e.Target.Key)
	switch {
	case errors.Is(err, ErrNoKey):
		e.loaded = d
		return config.Loaded{}, fmt.Errorf("%s: the key does not exist (write it with anyedge config push FILE %s)", e, e.Target)
	case err != nil:
		return config.Loaded{}, fmt.Errorf("%s: cannot read the key within %s: %w", e, e.startTimeout(), err)
	}
	e.loaded = d
	e.setStatus(true, d.ModRevision, nil)
	return config.Parse(d.Value, e.Options)
}

// Status is the source's link to the cluster, for /status and metrics.
func (e *Etcd) Status() *config.SourceStatus {
	st := e.status.Load()
	if st == nil {
		return &config.SourceStatus{}
	}
	cp := *st
	cp.Errors, cp.Disconnects = e.errors.Load(), e.dropouts.Load()
	return &cp
}

// setStatus records the link's state: up, or down with err. mod > 0 is
// the key's mod revision last read.
func (e *Etcd) setStatus(up bool, mod int64, err error) {
	old := e.status.Load()
	st := config.SourceStatus{Connected: up, Since: time.Now()}
	if old != nil {
		st = *old
		if old.Connected != up {
			st.Connected, st.Since = up, time.Now()
		}
	}
	if mod > 0 {
		st.ModRevision = mod
	}
	if err != nil {
		e.errors.Add(1)
		st.LastError, st.LastErrorAt = err.Error(), time.Now()
		if old != nil && old.Connected {
			e.dropouts.Add(1)
		}
	}
	e.status.Store(&st)
}

// Run watches the key until ctx ends and sends each new reading on out:
// every write of the key (a deletion is an error: the node keeps its
// document), the key read again after the cluster was unreachable when
// it changed meanwhile, and every Reread (forced). first is the start-up
// reading (Load). Run closes the source's client when it returns.
func (e *Etcd) Run(ctx context.Context, first config.Loaded, out chan<- config.Update) error {
	defer e.Close()
	log := e.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "config-source", "etcd", e.Target.String())
	warn := ratelog.New(log, 30*time.Second)
	c, err := e.conn()
	if err != nil {
		return err
	}
	r := &etcdRun{e: e, c: c, ctx: ctx, out: out, log: log, warn: warn, mod: e.loaded.ModRevision}
	if first.Revision == "" {
		r.mod = -1 // nothing in force from here: the first reading is news
	}
	rev := e.loaded.Revision
	for ctx.Err() == nil {
		if rev > 0 {
			r.watch(rev)
			if ctx.Err() != nil {
				return nil
			}
		}
		// Read the key again, until the cluster answers: what was
		// written while the watch was down is picked up here.
		rev = r.reconnect()
	}
	return nil
}

// etcdRun is one Run of an Etcd source.
type etcdRun struct {
	e    *Etcd
	c    *clientv3.Client
	ctx  context.Context
	out  chan<- config.Update
	log  *slog.Logger
	warn *ratelog.Logger
	mod  int64 // the mod revision of the last reading sent (or loaded)
}

// down records and logs (rate-limited) that the cluster cannot be
// reached.
func (r *etcdRun) down(err error) {
	was := r.e.status.Load()
	r.e.setStatus(false, 0, err)
	if was == nil || was.Connected {
		r.log.Warn("etcd unreachable; the document in force stays", "err", err)
		return
	}
	r.warn.Warn("etcd still unreachable; the document in force stays", "err", err)
}

// watch watches the key from revision rev+1 until the watch fails or a
// probe finds the cluster unreachable.
func (r *etcdRun) watch(rev int64) {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(r.ctx))
	defer cancel()
	wch := r.c.Watch(ctx, r.e.Target.Key, clientv3.WithRev(rev+1))
	tick := time.NewTicker(r.e.probe())
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case resp, ok := <-wch:
			if !ok {
				return
			}
			if err := resp.Err(); err != nil {
				r.down(fmt.Errorf("watch: %w", err))
				return
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					r.send(config.Update{Trigger: "etcd watch",
						Err: fmt.Errorf("%s: the key was deleted (at revision %d); the document in force stays", r.e, ev.Kv.ModRevision)})
					continue
				}
				r.deliver(EtcdDocument{Value: ev.Kv.Value, ModRevision: ev.Kv.ModRevision}, "etcd watch", false)
			}
		case <-tick.C:
			pctx, pcancel := context.WithTimeout(r.ctx, r.e.probe())
			_, err := r.c.Get(pctx, r.e.Target.Key, clientv3.WithCountOnly())
			pcancel()
			if err != nil && r.ctx.Err() == nil {
				r.down(fmt.Errorf("probe: %w", err))
				return
			}
		case <-r.e.Reread:
			pctx, pcancel := context.WithTimeout(r.ctx, r.e.probe())
			d, err := GetEtcd(pctx, r.c, r.e.Target.Key)
			pcancel()
			if err != nil && !errors.Is(err, ErrNoKey) {
				r.down(err)
				return
			}
			r.deliver(d, "sighup", true)
		}
	}
}

// reconnect reads the key until the cluster answers, sends it if it
// changed, and returns the cluster's revision then (to watch from).
func (r *etcdRun) reconnect() int64 {
	wasDown := !r.e.Status().Connected
	for {
		ctx, cancel := context.WithTimeout(r.ctx, r.e.probe())
		d, err := GetEtcd(ctx, r.c, r.e.Target.Key)
		cancel()
		if r.ctx.Err() != nil {
			return 0
		}
		if err == nil || errors.Is(err, ErrNoKey) {
			if wasDown {
				r.log.Info("etcd reachable again; watching the key", "revision", d.Revision, "mod_revision", d.ModRevision)
			}
			r.e.setStatus(true, d.ModRevision, nil)
			if d.ModRevision != r.mod {
				r.deliver(d, "etcd reconnected", false)
			}
			return d.Revision
		}
		r.down(err)
		select {
		case <-r.ctx.Done():
			return 0
		case <-time.After(r.e.probe()):
		}
	}
}

// deliver parses what the key holds and sends it, unless it is the
// reading last sent and force is not set.
func (r *etcdRun) deliver(d EtcdDocument, trigger string, force bool) {
	if d.ModRevision == r.mod && !force {
		return
	}
	r.mod = d.ModRevision
	r.e.setStatus(true, d.ModRevision, nil)
	u := config.Update{Trigger: trigger, Force: force}
	if d.ModRevision == 0 {
		u.Err = fmt.Errorf("%s: the key does not exist; the document in force stays", r.e)
	} else {
		u.Loaded, u.Err = config.Parse(d.Value, r.e.Options)
	}
	r.log.Debug("document read", "trigger", trigger, "mod_revision", d.ModRevision, "revision", u.Loaded.Revision, "err", u.Err)
	r.send(u)
}

func (r *etcdRun) send(u config.Update) {
	select {
	case r.out <- u:
	case <-r.ctx.Done():
	}
}
