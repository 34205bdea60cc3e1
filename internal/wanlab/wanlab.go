//go:build linux

// Package wanlab builds the WAN lab: four network namespaces — a client, a
// PoP, a region and an endpoint — joined by links that internal/wanem
// emulates:
//
//	client ── internet (emulated) ───────────────────────────── endpoint
//	client ── access (emulated) ── PoP ── backbone (emulated) ── region ── local (veth) ── endpoint
//
// so that the same client can fetch from the endpoint directly over the
// "internet" path, or through an accelerator whose edge runs in the PoP
// and whose region gateway runs in the region. Every link is a /30 out of
// 198.18.0.0/15; no packet leaves the lab. The namespaces are named
// "aelab-NAME-ROLE"; Down removes everything of a lab by that prefix, also
// what a crashed run left behind. Everything needs root.
package wanlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/anyedge/anyedge/internal/wanem"
)

// Roles: the namespaces of a lab.
const (
	Client   = "client"
	PoP      = "pop"
	Region   = "region"
	Endpoint = "endpoint"
)

// Roles lists every namespace role of a lab.
var Roles = []string{Client, PoP, Region, Endpoint}

// Addresses of the lab (all inside 198.18.0.0/15). Each link is a /30.
var (
	// ClientInternet and EndpointInternet are the two ends of the internet path.
	ClientInternet   = netip.MustParseAddr("198.18.1.1")
	EndpointInternet = netip.MustParseAddr("198.18.1.2")
	// ClientAccess and PoPAccess are the ends of the client's access link;
	// PoPAccess is where the client reaches the accelerator.
	ClientAccess = netip.MustParseAddr("198.18.2.1")
	PoPAccess    = netip.MustParseAddr("198.18.2.2")
	// PoPBackbone and RegionBackbone are the ends of the backbone.
	PoPBackbone    = netip.MustParseAddr("198.18.3.1")
	RegionBackbone = netip.MustParseAddr("198.18.3.2")
	// RegionLocal and EndpointLocal are the ends of the region's local link.
	RegionLocal   = netip.MustParseAddr("198.18.4.1")
	EndpointLocal = netip.MustParseAddr("198.18.4.2")
)

// Link names.
const (
	Internet = "internet"
	Access   = "access"
	Backbone = "backbone"
)

// MTU of every lab link.
const MTU = 1500

// Shape is the emulation of one link: AB from its first end to its second
// (client → endpoint, client → PoP, PoP → region), BA the reverse.
type Shape struct{ AB, BA wanem.Params }

// Symmetric shapes both directions alike.
func Symmetric(p wanem.Params) Shape { return Shape{AB: p, BA: p} }

// Config describes a lab.
type Config struct {
	// Name tells labs apart: namespaces are aelab-NAME-ROLE.
	Name string
	// Internet, Access and Backbone shape the three emulated links.
	Internet, Access, Backbone Shape
	// Realtime runs the emulator's loops at SCHED_FIFO priority, and the
	// rest of the process just above normal threads (see
	// wanem.KeepProcessRealtime): for processes that do little else.
	Realtime bool
	// TCPMaxBuffer, when set, is the largest TCP socket buffer (bytes) in
	// every namespace (net.ipv4.tcp_rmem and tcp_wmem maximum), so that
	// kernel TCP can fill a long fat pipe.
	TCPMaxBuffer int
}

// Lab is a running lab. Close removes it.
type Lab struct {
	name   string
	links  map[string]*wanem.Link
	stopRT context.CancelFunc
	rtDone chan struct{}
	once   sync.Once
}

// Prefix is the namespace name prefix of lab name.
func Prefix(name string) string { return "aelab-" + name + "-" }

// NS returns the namespace name of role in lab name.
func NS(name, role string) string { return Prefix(name) + role }

// Available reports why a lab cannot run here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("wanlab: needs root (network namespaces, TUN devices)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("wanlab: needs iproute2: %w", err)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("wanlab: needs /dev/net/tun: %w", err)
	}
	return nil
}

// Up builds the lab. Leftovers of a lab with the same name are removed
// first. On error nothing stays behind.
func Up(cfg Config) (_ *Lab, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if cfg.Name == "" || strings.ContainsAny(cfg.Name, "/ ") {
		return nil, fmt.Errorf("wanlab: bad lab name %q", cfg.Name)
	}
	for _, s := range []Shape{cfg.Internet, cfg.Access, cfg.Backbone} {
		if err := errors.Join(s.AB.Validate(), s.BA.Validate()); err != nil {
			return nil, err
		}
	}
	if err := Down(cfg.Name); err != nil {
		return nil, err
	}
	l := &Lab{name: cfg.Name, links: map[string]*wanem.Link{}, stopRT: func() {}}
	if cfg.Realtime {
		ctx, cancel := context.WithCancel(context.Background())
		l.stopRT, l.rtDone = cancel, make(chan struct{})
		go func() {
			defer close(l.rtDone)
			wanem.KeepProcessRealtime(ctx, 100*time.Millisecond)
		}()
	}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	for _, r := range Roles {
		if err := ip("netns", "add", l.NS(r)); err != nil {
			return nil, err
		}
		if err := l.IP(r, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
		if cfg.TCPMaxBuffer > 0 {
			for _, k := range []string{"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"} {
				v := fmt.Sprintf("4096 131072 %d", cfg.TCPMaxBuffer)
				if out, err := l.Command(r, "sysctl", "-qw", k+"="+v).CombinedOutput(); err != nil {
					return nil, fmt.Errorf("wanlab: %s: sysctl %s: %w: %s", r, k, err, out)
				}
			}
		}
	}
	opts := wanem.Options{Realtime: cfg.Realtime}
	for _, e := range []struct {
		name   string
		a, b   string
		aa, ba netip.Addr
		shape  Shape
	}{
		{Internet, Client, Endpoint, ClientInternet, EndpointInternet, cfg.Internet},
		{Access, Client, PoP, ClientAccess, PoPAccess, cfg.Access},
		{Backbone, PoP, Region, PoPBackbone, RegionBackbone, cfg.Backbone},
	} {
		if err := l.emulate(e.name, e.a, e.b, e.aa, e.ba, e.shape, opts); err != nil {
			return nil, err
		}
	}
	if err := ip("link", "add", "local", "netns", l.NS(Region), "type", "veth", "peer", "name", "local", "netns", l.NS(Endpoint)); err != nil {
		return nil, err
	}
	for _, e := range []struct {
		role string
		addr netip.Addr
	}{{Region, RegionLocal}, {Endpoint, EndpointLocal}} {
		if err := l.IP(e.role, "addr", "add", e.addr.String()+"/30", "dev", "local"); err != nil {
			return nil, err
		}
		if err := l.IP(e.role, "link", "set", "local", "up"); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// emulate creates a TUN device named after the link at each end, addresses
// both ends and starts the emulator between them.
func (l *Lab) emulate(name, a, b string, addrA, addrB netip.Addr, s Shape, opts wanem.Options) error {
	fdA, err := wanem.OpenTUN(l.NS(a), name)
	if err != nil {
		return err
	}
	fdB, err := wanem.OpenTUN(l.NS(b), name)
	if err != nil {
		_ = unix.Close(fdA)
		return err
	}
	link, err := wanem.NewLink(name, fdA, fdB, s.AB, s.BA, opts)
	if err != nil {
		return err
	}
	l.links[name] = link
	for _, e := range []struct {
		role string
		addr netip.Addr
	}{{a, addrA}, {b, addrB}} {
		if err := l.IP(e.role, "addr", "add", e.addr.String()+"/30", "dev", name); err != nil {
			return err
		}
		if err := l.IP(e.role, "link", "set", name, "mtu", fmt.Sprint(MTU), "txqueuelen", "1000", "up"); err != nil {
			return err
		}
	}
	return nil
}

// Name is the lab's name.
func (l *Lab) Name() string { return l.name }

// NS returns the namespace name of role.
func (l *Lab) NS(role string) string { return NS(l.name, role) }

// Set changes the shaping of link (Internet, Access or Backbone).
func (l *Lab) Set(link string, s Shape) error {
	lk := l.links[link]
	if lk == nil {
		return fmt.Errorf("wanlab: no link %q", link)
	}
	return errors.Join(lk.AB.Set(s.AB), lk.BA.Set(s.BA))
}

// Stats returns the emulator's counters of link, both directions summed.
func (l *Lab) Stats(link string) wanem.Stats {
	if lk := l.links[link]; lk != nil {
		return lk.Stats()
	}
	return wanem.Stats{}
}

// Late is the number of packets the emulator sent late, over every link.
func (l *Lab) Late() uint64 {
	var n uint64
	for _, lk := range l.links {
		n += lk.Stats().Late
	}
	return n
}

// MaxLate is the worst lateness of the emulator so far, over every link.
func (l *Lab) MaxLate() time.Duration {
	var d time.Duration
	for _, lk := range l.links {
		d = max(d, lk.Stats().MaxLate)
	}
	return d
}

// Command returns a command that runs inside role's namespace. `ip netns
// exec` replaces itself with the command, so the process ID is the
// command's own.
func (l *Lab) Command(role string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.NS(role)}, args...)...)
}

// IP runs `ip ARGS` in role's namespace.
func (l *Lab) IP(role string, args ...string) error {
	return ip(append([]string{"-n", l.NS(role)}, args...)...)
}

// Do runs f on an OS thread switched into role's namespace: sockets that
// f opens stay in the namespace and can be used from any goroutine after.
func (l *Lab) Do(role string, f func() error) error {
	target, err := netns.GetFromName(l.NS(role))
	if err != nil {
		return fmt.Errorf("wanlab: namespace %s: %w", l.NS(role), err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err) // the thread dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Close stops the emulator and removes the namespaces. Idempotent.
func (l *Lab) Close() error {
	var err error
	l.once.Do(func() {
		l.stopRT()
		if l.rtDone != nil {
			<-l.rtDone
		}
		for _, lk := range l.links {
			err = errors.Join(err, lk.Close())
		}
		err = errors.Join(err, Down(l.name))
	})
	return err
}

// Down removes every namespace of lab name (aelab-NAME-*), whether a
// running lab, a crashed one or a half-built one left it. Processes still
// running inside are not killed: the namespace disappears when they exit.
func Down(name string) error {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("wanlab: ip netns list: %w", err)
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], Prefix(name)) {
			if err := ip("netns", "del", f[0]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("wanlab: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
