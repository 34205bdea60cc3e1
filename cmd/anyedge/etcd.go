package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/config/source"
)

// etcdFlags are the TLS files of an etcd:// address given as flags; the
// address's own ca, cert and key options win over them.
type etcdFlags struct {
	ca, cert, key string
	// timeout bounds the wait for etcd at a node's start-up and in
	// config push and get.
	timeout time.Duration
}

func (e *etcdFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&e.ca, "etcd-ca", os.Getenv("ANYEDGE_ETCD_CA"), "with an etcd:// config: the CA bundle (PEM) etcd's certificates are checked with; turns TLS on")
	fs.StringVar(&e.cert, "etcd-cert", os.Getenv("ANYEDGE_ETCD_CERT"), "with an etcd:// config: a client certificate (PEM); turns TLS on")
	fs.StringVar(&e.key, "etcd-key", os.Getenv("ANYEDGE_ETCD_KEY"), "with an etcd:// config: the client certificate's key (PEM)")
	fs.DurationVar(&e.timeout, "etcd-timeout", 10*time.Second, "with an etcd:// config: how long to wait for etcd at start-up (config push, get: in all)")
}

// target parses an etcd:// address and fills in the TLS files the flags
// give.
func (e *etcdFlags) target(addr string) (source.EtcdTarget, error) {
	t, err := source.ParseEtcd(addr)
	if err != nil {
		return t, err
	}
	if t.CAFile == "" {
		t.CAFile = e.ca
	}
	if t.CertFile == "" && t.KeyFile == "" {
		t.CertFile, t.KeyFile = e.cert, e.key
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return t, errors.New("--etcd-cert and --etcd-key go together")
	}
	return t, nil
}

// docSource is where a node's document comes from: a file or an etcd key.
type docSource interface {
	Load() (config.Loaded, error)
	Run(ctx context.Context, first config.Loaded, out chan<- config.Update) error
	String() string
	// Status is the link to an etcd cluster (nil for a file).
	Status() *config.SourceStatus
	Close() error
}

// fileSource is a file source as a docSource.
type fileSource struct{ *source.File }

func (fileSource) Status() *config.SourceStatus { return nil }
func (fileSource) Close() error                 { return nil }

// source returns the source --config names.
func (e *etcdFlags) source(addr string, reread <-chan struct{}, log *slog.Logger) (docSource, error) {
	if !source.IsEtcd(addr) {
		return fileSource{&source.File{Path: addr, Reread: reread, Logger: log}}, nil
	}
	t, err := e.target(addr)
	if err != nil {
		return nil, err
	}
	return &source.Etcd{Target: t, Reread: reread, Logger: log, StartTimeout: e.timeout}, nil
}

const configUsage = `usage:
  anyedge config push [--expect-revision N] FILE etcd://HOST:PORT[,...]/KEY
                        validate FILE and write it to the key, if nobody wrote the key since
                        mod revision N (default: the revision read just before writing; 0: the key
                        must not exist)
  anyedge config get etcd://HOST:PORT[,...]/KEY
                        print the document (stdout) and its revisions (stderr)
  TLS: --etcd-ca FILE, --etcd-cert FILE --etcd-key FILE, or ?ca=FILE&cert=FILE&key=FILE on the address;
  --etcd-timeout D bounds the whole command (default 10s)`

func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "push" && args[0] != "get") {
		fmt.Fprintln(stderr, configUsage)
		return exitConfig
	}
	sub := args[0]
	fs := flag.NewFlagSet("config "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ef etcdFlags
	ef.register(fs)
	expect := fs.String("expect-revision", "", "push: write only if the key's mod revision is this (0: the key must not exist)")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return exitConfig
	}
	want := map[string]int{"push": 2, "get": 1}[sub]
	if len(pos) != want {
		fmt.Fprintln(stderr, configUsage)
		return exitConfig
	}
	t, err := ef.target(pos[len(pos)-1])
	if err != nil {
		fmt.Fprintf(stderr, "anyedge config %s: %v\n", sub, err)
		return exitConfig
	}
	var data []byte
	if sub == "push" {
		// Validated first, by the same Parse every node runs.
		file := pos[0]
		loaded, err := config.ParseFile(file, config.LoadOptions{})
		if err != nil {
			printConfigError(stderr, file, err)
			fmt.Fprintf(stderr, "anyedge config push: %s is invalid; nothing was written\n", file)
			return exitConfig
		}
		if data, err = os.ReadFile(file); err != nil || config.RevisionOf(data) != loaded.Revision {
			fmt.Fprintf(stderr, "anyedge config push: %s changed while it was validated; nothing was written\n", file)
			return exitFail
		}
	}
	c, err := t.Client()
	if err != nil {
		fmt.Fprintf(stderr, "anyedge config %s: %v\n", sub, err)
		return exitFail
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), ef.timeout)
	defer cancel()
	d, err := source.GetEtcd(ctx, c, t.Key)
	if err != nil && !(sub == "push" && errors.Is(err, source.ErrNoKey)) {
		fmt.Fprintf(stderr, "anyedge config %s: %s: key %s: %v\n", sub, t, t.Key, err)
		return exitFail
	}
	if sub == "get" {
		_, _ = stdout.Write(d.Value)
		fmt.Fprintf(stderr, "# %s: mod_revision %d, create_revision %d, version %d; document revision %s\n",
			t, d.ModRevision, d.CreateRevision, d.Version, config.RevisionOf(d.Value))
		return exitOK
	}
	at := d.ModRevision
	if *expect != "" {
		if at, err = strconv.ParseInt(*expect, 10, 64); err != nil || at < 0 {
			fmt.Fprintf(stderr, "anyedge config push: --expect-revision %q: want a mod revision (0: no key yet)\n", *expect)
			return exitConfig
		}
	}
	mod, err := source.PutEtcd(ctx, c, t.Key, data, at)
	if err != nil {
		fmt.Fprintf(stderr, "anyedge config push: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s: written at mod_revision %d (was %d); document revision %s\n", t, mod, d.ModRevision, config.RevisionOf(data))
	return exitOK
}
