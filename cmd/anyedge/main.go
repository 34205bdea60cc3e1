// Command anyedge is the single binary of the anyedge accelerator: it runs
// an edge (PoP), a region gateway, or a whole fleet on a laptop (dev), and
// offers the operator's tools (validate, certs, version).
//
// Only flag parsing, wiring and signals live here; everything a test would
// want to reach lives in the packages.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/configs"
	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/dashboard"
	"github.com/anyedge/anyedge/control/dev"
	"github.com/anyedge/anyedge/control/node"
	"github.com/anyedge/anyedge/internal/sdnotify"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

const usage = `anyedge — a self-hosted anycast edge accelerator

usage:
  anyedge dev      [--config FILE] [--dashboard ADDR]
                                              run the quickstart (or FILE) in one process on 127.0.0.1
  anyedge edge     --config FILE --node NAME  run an edge (PoP)
  anyedge region   --config FILE --node NAME  run a region gateway
                   (--config etcd://HOST:PORT[,HOST:PORT...]/KEY [--etcd-ca F --etcd-cert F --etcd-key F]:
                   the document in an etcd key, watched)
  anyedge validate [--node NAME] FILE         check a config: every error as FILE:LINE:COL: path: msg; exit 2 on error
                                              (warnings, e.g. of network zones, are printed; exit 0)
  anyedge certs init  --dir DIR               create the backbone CA
  anyedge certs issue --dir DIR --node NAME   issue a node certificate
  anyedge certs issue --dir DIR --operator NAME [--role read|admin]
                                              issue an operator certificate for remote admin APIs
  anyedge ctl status|ready|drain|undrain [--admin ADDR] [--cert F --key F --ca F [--node NAME]]
                                              talk to a running node's admin API (default 127.0.0.1:9180;
                                              with an operator certificate, its remote_admin address)
  anyedge ctl allow|deny --subnet ID (--all | --address A… [--port P…]) [--admin REGION]
                                              custom routing: allow or deny destinations at run time
  anyedge ctl port-map [--destination ADDR:PORT] [--port P] [--accelerator NAME] [--subnet ID] [--expand]
                                              custom routing: which listener port reaches which destination
  anyedge ctl weight ENDPOINT N | dial REGION PERCENT | reset
                                              a node's run-time overrides for an incident (until reset or restart)
  anyedge config push [--expect-revision N] FILE etcd://HOST:PORT/KEY
                                              validate FILE, then write it to the key (compare-and-swap)
  anyedge config get etcd://HOST:PORT/KEY     print the key's document and its revisions
  anyedge dashboard --config FILE [--listen ADDR] [--cert F --key F --ca F]
                                              serve the live health page of the whole fleet (default 127.0.0.1:9190)
  anyedge version

common flags: --log-format text|json, --log-level debug|info|warn|error
environment:  ANYEDGE_CONFIG, ANYEDGE_NODE, ANYEDGE_LOG_FORMAT, ANYEDGE_LOG_LEVEL set flag
              defaults; ANYEDGE_<KEY> overrides scalar config keys (e.g. ANYEDGE_TOPOLOGY_PKI_DIR)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitConfig
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "dev":
		return runDev(args, stdout, stderr)
	case "edge", "region":
		return runNode(cmd, args, stderr)
	case "validate":
		return runValidate(args, stdout, stderr)
	case "certs":
		return runCerts(args, stdout, stderr)
	case "ctl":
		return runCtl(args, stdout, stderr)
	case "dashboard":
		return runDashboard(args, stdout, stderr)
	case "config":
		return runConfig(args, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "anyedge", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "anyedge: unknown command %q\n\n%s", cmd, usage)
	return exitConfig
}

// common holds the flags every running subcommand takes.
type common struct {
	config, node, logFormat, logLevel string
	etcd                              etcdFlags
}

func newFlags(name string, stderr io.Writer, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.config, "config", os.Getenv("ANYEDGE_CONFIG"), "config file (YAML), or etcd://HOST:PORT[,HOST:PORT...]/KEY")
	c.etcd.register(fs)
	fs.StringVar(&c.node, "node", os.Getenv("ANYEDGE_NODE"), "name of this node in the topology")
	fs.StringVar(&c.logFormat, "log-format", envOr("ANYEDGE_LOG_FORMAT", "text"), "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", envOr("ANYEDGE_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	return fs
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// parse parses args into fs and builds the logger the flags ask for; it
// reports false (having said why) on a bad flag.
func (c *common) parse(fs *flag.FlagSet, args []string, stderr io.Writer) (*slog.Logger, bool) {
	if err := fs.Parse(args); err != nil {
		return nil, false
	}
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, false
	}
	return log, true
}

func (c *common) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", c.logFormat)
}

// signalContext ends on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// printConfigError prints a config error, each problem of a
// *config.ValidationError on its own line as "file:line:column: path:
// message", then their count.
func printConfigError(stderr io.Writer, file string, err error) {
	var ve *config.ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			if p.Line > 0 {
				fmt.Fprintf(stderr, "%s:%s\n", file, p)
			} else {
				fmt.Fprintf(stderr, "%s: %s\n", file, p)
			}
		}
		if ve.Omitted > 0 {
			fmt.Fprintf(stderr, "… and %d more not listed\n", ve.Omitted)
		}
		fmt.Fprintf(stderr, "%d error(s)\n", ve.Total())
		return
	}
	fmt.Fprintln(stderr, err)
}

func runDev(args []string, stdout, stderr io.Writer) int {
	var c common
	fs := newFlags("dev", stderr, &c)
	board := fs.String("dashboard", dev.DefaultDashboard, "loopback host:port of the fleet's dashboard page")
	log, ok := c.parse(fs, args, stderr)
	if !ok {
		return exitConfig
	}
	var (
		doc *config.Document
		err error
	)
	file := c.config
	if file != "" {
		doc, err = config.LoadFile(file, config.LoadOptions{})
	} else {
		file = "configs/quickstart.yaml (embedded)"
		doc, err = config.Load(configs.Quickstart, config.LoadOptions{})
	}
	if err != nil {
		printConfigError(stderr, file, err)
		return exitConfig
	}
	ctx, stop := signalContext()
	defer stop()
	if err := dev.Run(ctx, dev.Options{Doc: doc, Version: version, Logger: log, Out: stdout, Dashboard: *board}); err != nil {
		log.Error("anyedge dev failed", "err", err)
		return exitFail
	}
	log.Info("anyedge dev stopped")
	return exitOK
}

func runNode(role string, args []string, stderr io.Writer) int {
	var c common
	fs := newFlags(role, stderr, &c)
	log, ok := c.parse(fs, args, stderr)
	if !ok {
		return exitConfig
	}
	if c.config == "" || c.node == "" {
		fmt.Fprintf(stderr, "anyedge %s: --config and --node are required\n", role)
		return exitConfig
	}
	// SIGHUP reads the document again and reopens the flow log (after
	// logrotate renamed it); a change of the file reads it too.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reread, reopen := make(chan struct{}, 1), make(chan struct{}, 1)
	src, err := c.etcd.source(c.config, reread, log)
	if err != nil {
		fmt.Fprintf(stderr, "anyedge %s: --config: %v\n", role, err)
		return exitConfig
	}
	loaded, err := src.Load()
	if err != nil {
		_ = src.Close()
		printConfigError(stderr, c.config, err)
		return exitConfig
	}
	doc := loaded.Doc
	n, err := doc.Node(c.node)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	if string(n.Role) != role {
		fmt.Fprintf(stderr, "--node %q is a %s, not a %s\n", c.node, n.Role, role)
		return exitConfig
	}
	// SIGINT stops at once; SIGTERM drains an edge (GRACEFUL_SHUTDOWN,
	// withdraw, serve until drain.timeout, exit 0) and stops a region.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	defer signal.Stop(term)
	drain := make(chan struct{})
	go func() {
		select {
		case <-term:
			if n.Role == config.RolePoP {
				log.Info("SIGTERM: draining")
				close(drain)
			} else {
				stop()
			}
		case <-ctx.Done():
		}
	}()
	// Under systemd (Type=notify), READY=1, STOPPING=1 and the watchdog.
	notifier, err := sdnotify.FromEnv(os.Getenv, os.Getpid())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	defer notifier.Close()
	go func() {
		for {
			select {
			case <-hup:
				for _, ch := range []chan struct{}{reread, reopen} {
					select {
					case ch <- struct{}{}:
					default: // one pending is enough
					}
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	updates := make(chan config.Update)
	srcCtx, stopSrc := context.WithCancel(ctx)
	srcDone := make(chan struct{})
	go func() {
		defer close(srcDone)
		_ = src.Run(srcCtx, loaded, updates)
	}()
	err = node.Run(ctx, node.Options{Doc: doc, Revision: loaded.Revision, Source: src.String(), Updates: updates,
		SourceStatus: src.Status, Node: c.node, Version: version, Logger: log, Drain: drain, Notify: notifier, Reopen: reopen})
	stopSrc()
	<-srcDone
	if err != nil {
		log.Error("anyedge stopped on error", "err", err)
		return exitFail
	}
	log.Info("anyedge stopped")
	return exitOK
}

func runValidate(args []string, stdout, stderr io.Writer) int {
	var c common
	fs := newFlags("validate", stderr, &c)
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	file := c.config
	if fs.NArg() > 0 {
		file = fs.Arg(0)
	}
	if file == "" {
		fmt.Fprintln(stderr, "anyedge validate: name a config file")
		return exitConfig
	}
	loaded, err := config.ParseFile(file, config.LoadOptions{})
	if err != nil {
		printConfigError(stderr, file, err)
		return exitConfig
	}
	doc := loaded.Doc
	if c.node != "" {
		if _, err := doc.Node(c.node); err != nil {
			fmt.Fprintln(stderr, err)
			return exitConfig
		}
	}
	for _, w := range doc.Warnings() {
		fmt.Fprintln(stderr, "warning:", w.String())
	}
	fmt.Fprintf(stdout, "%s: ok (%d accelerators, %d pops, %d regions; revision %s)\n", file,
		len(doc.Accelerators), len(doc.Topology.PoPs), len(doc.Topology.Regions), loaded.Revision)
	return exitOK
}

func runCerts(args []string, stdout, stderr io.Writer) int {
	const certsUsage = "usage: anyedge certs init --dir DIR | anyedge certs issue --dir DIR (--node NAME | --operator NAME [--role read|admin])"
	if len(args) == 0 || (args[0] != "init" && args[0] != "issue") {
		fmt.Fprintln(stderr, certsUsage)
		return exitConfig
	}
	sub := args[0]
	fs := flag.NewFlagSet("certs "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "/etc/anyedge/pki", "PKI directory")
	nodeName := fs.String("node", "", "node name (issue)")
	operator := fs.String("operator", "", "operator name (issue): a client certificate for the remote admin API")
	role := fs.String("role", string(pki.RoleRead), "operator role (issue --operator): read, or admin to drain and undrain")
	validity := fs.Duration("validity", 0, "certificate validity (default: CA 10 years, node 1 year, operator 90 days)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitConfig
	}
	now := time.Now()
	validFor := func(def time.Duration) time.Duration {
		if *validity == 0 {
			return def
		}
		return *validity
	}
	var err error
	switch {
	case sub == "init":
		err = pki.InitCA(*dir, validFor(pki.DefaultCAValidity), now)
		if err == nil {
			fmt.Fprintf(stdout, "CA written to %s\n", *dir)
		}
	case strings.TrimSpace(*nodeName) != "" && *operator == "":
		err = pki.Issue(*dir, *nodeName, validFor(pki.DefaultNodeValidity), now)
		if err == nil {
			fmt.Fprintf(stdout, "certificate for %s written to %s\n", *nodeName, *dir)
		}
	case strings.TrimSpace(*operator) != "" && *nodeName == "":
		r, perr := pki.ParseRole(*role)
		if perr != nil {
			fmt.Fprintln(stderr, "anyedge certs issue: --role:", perr)
			return exitConfig
		}
		err = pki.IssueOperator(*dir, *operator, r, validFor(pki.DefaultOperatorValidity), now)
		if err == nil {
			fmt.Fprintf(stdout, "operator certificate for %s (role %s) written to %s and %s\n", *operator, r,
				pki.OperatorCertFile(*dir, *operator), pki.OperatorKeyFile(*dir, *operator))
		}
	default:
		fmt.Fprintln(stderr, "anyedge certs issue: exactly one of --node and --operator is required")
		return exitConfig
	}
	if err != nil {
		fmt.Fprintln(stderr, "anyedge certs:", err)
		return exitFail
	}
	return exitOK
}

// operatorFlags are the client credentials for a remote admin API.
type operatorFlags struct {
	cert, key, ca string
}

func (o *operatorFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&o.cert, "cert", os.Getenv("ANYEDGE_ADMIN_CERT"), "operator certificate for remote admin APIs (anyedge certs issue --operator)")
	fs.StringVar(&o.key, "key", os.Getenv("ANYEDGE_ADMIN_KEY"), "operator private key")
	fs.StringVar(&o.ca, "ca", os.Getenv("ANYEDGE_ADMIN_CA"), "the fleet's CA certificates (ca.crt)")
}

// load returns the operator's credentials, or nil when none are given
// (plain HTTP to loopback admin addresses).
func (o *operatorFlags) load() (*pki.OperatorClient, error) {
	if o.cert == "" && o.key == "" && o.ca == "" {
		return nil, nil
	}
	if o.cert == "" || o.key == "" || o.ca == "" {
		return nil, errors.New("--cert, --key and --ca go together")
	}
	return pki.LoadOperator(o.cert, o.key, o.ca)
}

const ctlUsage = `usage: anyedge ctl COMMAND [--admin ADDR] [--cert FILE --key FILE --ca FILE [--node NAME]]
  status|ready|drain|undrain
  allow|deny --subnet ID (--all | --address A [--address A …] [--port P …])
                        custom routing, on the region serving the subnet (the authority)
  port-map [--destination ADDR:PORT] [--port P] [--accelerator NAME] [--subnet ID] [--expand]
                        which listener port reaches which destination (any node)
  weight ENDPOINT N     override an endpoint's weight (0–255) on this node
  dial REGION PERCENT   override a region's traffic dial (0–100) on this node
  reset                 clear this node's overrides (a restart clears them too)`

func runCtl(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, ctlUsage)
		return exitConfig
	}
	sub := args[0]
	fs := flag.NewFlagSet("ctl "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("admin", envOr("ANYEDGE_ADMIN", "127.0.0.1:9180"), "admin API address of the node (its remote_admin with --cert)")
	nodeName := fs.String("node", os.Getenv("ANYEDGE_NODE"), "with --cert: the node's name, checked against its certificate (empty: any node of the fleet)")
	var creds operatorFlags
	creds.register(fs)
	var traffic admin.TrafficRequest
	var pm admin.PortMapQuery
	switch sub {
	case "allow", "deny":
		fs.StringVar(&traffic.Subnet, "subnet", "", "custom routing subnet ID")
		fs.BoolVar(&traffic.All, "all", false, "every destination of the subnet")
		fs.Func("address", "a destination address (repeat for more)", func(v string) error {
			traffic.Addresses = append(traffic.Addresses, v)
			return nil
		})
		fs.Func("port", "a destination port (repeat for more; none: every port)", func(v string) error {
			n, err := strconv.Atoi(v)
			traffic.Ports = append(traffic.Ports, n)
			return err
		})
	case "port-map":
		fs.StringVar(&pm.Destination, "destination", "", "the destination ADDRESS:PORT to find the listener port of")
		fs.IntVar(&pm.Port, "port", 0, "the listener port to find the destination of")
		fs.StringVar(&pm.Accelerator, "accelerator", "", "only this accelerator")
		fs.StringVar(&pm.Subnet, "subnet", "", "only this subnet")
		fs.BoolVar(&pm.Expand, "expand", false, "list every mapping instead of the subnets' blocks")
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return exitConfig
	}
	ov, err := overrideRequest(sub, pos)
	if err != nil {
		fmt.Fprintf(stderr, "anyedge ctl %s: %v\n", sub, err)
		return exitConfig
	}
	if (sub == "allow" || sub == "deny") && traffic.Subnet == "" {
		fmt.Fprintln(stderr, "anyedge ctl "+sub+": --subnet is required")
		return exitConfig
	}
	op, err := creds.load()
	if err != nil {
		fmt.Fprintln(stderr, "anyedge ctl:", err)
		return exitConfig
	}
	var tlsConfig *tls.Config
	if op != nil {
		tlsConfig = op.TLSConfig(*nodeName)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := admin.NewClient(*addr, tlsConfig)
	defer c.Close()
	var out string
	switch sub {
	case "allow", "deny":
		var b []byte
		b, err = c.Post(ctx, "/custom-routing/"+sub, traffic)
		out = string(b)
	case "weight", "dial", "reset":
		var b []byte
		b, err = c.Post(ctx, "/overrides", ov)
		out = string(b)
	case "port-map":
		q := url.Values{}
		for k, v := range map[string]string{"destination": pm.Destination, "accelerator": pm.Accelerator, "subnet": pm.Subnet} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if pm.Port != 0 {
			q.Set("port", strconv.Itoa(pm.Port))
		}
		if pm.Expand {
			q.Set("expand", "1")
		}
		var b []byte
		b, err = c.Get(ctx, "/port-map?"+q.Encode())
		out = string(b)
	default:
		out, err = c.Call(ctx, sub)
	}
	if err != nil {
		fmt.Fprintln(stderr, "anyedge ctl:", err) // the error carries the answer's body
		return exitFail
	}
	fmt.Fprint(stdout, out)
	return exitOK
}

// parseInterspersed parses args into fs, flags and positional arguments
// in any order, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
}

// overrideRequest is the request of ctl weight, dial and reset, from
// their positional arguments; other commands take none.
func overrideRequest(sub string, pos []string) (admin.OverrideRequest, error) {
	req := admin.OverrideRequest{Kind: sub}
	switch sub {
	case admin.OverrideWeight, admin.OverrideDial:
		what := map[string]string{admin.OverrideWeight: "ENDPOINT N", admin.OverrideDial: "REGION PERCENT"}[sub]
		if len(pos) != 2 {
			return req, fmt.Errorf("want %s", what)
		}
		v, err := strconv.Atoi(pos[1])
		if err != nil {
			return req, fmt.Errorf("want %s: %q is not a number", what, pos[1])
		}
		req.Name, req.Value = pos[0], &v
	default:
		if len(pos) > 0 {
			return req, fmt.Errorf("unexpected arguments %q", pos)
		}
	}
	return req, nil
}

func runDashboard(args []string, stdout, stderr io.Writer) int {
	var c common
	fs := newFlags("dashboard", stderr, &c)
	listen := fs.String("listen", dev.DefaultDashboard, "host:port of the page; it has no authentication of its own, keep it on loopback")
	var creds operatorFlags
	creds.register(fs)
	log, ok := c.parse(fs, args, stderr)
	if !ok {
		return exitConfig
	}
	if c.config == "" {
		fmt.Fprintln(stderr, "anyedge dashboard: --config is required")
		return exitConfig
	}
	doc, err := config.LoadFile(c.config, config.LoadOptions{})
	if err != nil {
		printConfigError(stderr, c.config, err)
		return exitConfig
	}
	op, err := creds.load()
	if err != nil {
		fmt.Fprintln(stderr, "anyedge dashboard:", err)
		return exitConfig
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "anyedge dashboard:", err)
		return exitFail
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		log.Warn("the dashboard page has no authentication and listens beyond loopback; anyone who reaches it sees the fleet's state", "listen", ln.Addr().String())
	}
	targets := dashboard.FleetTargets(doc, op)
	for _, t := range targets {
		log.Info("dashboard reads node", "node", t.Name, "role", t.Role, "addr", t.Addr)
	}
	fmt.Fprintf(stdout, "dashboard on http://%s/\n", ln.Addr())
	ctx, stop := signalContext()
	defer stop()
	d := dashboard.New(targets, dashboard.Options{Title: filepath.Base(c.config), Logger: log})
	if err := d.Serve(ctx, ln); err != nil {
		log.Error("anyedge dashboard failed", "err", err)
		return exitFail
	}
	return exitOK
}
