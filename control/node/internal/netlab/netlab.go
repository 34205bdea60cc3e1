//go:build linux

// Package netlab builds throwaway network labs for tests that need to cut a
// link: a fresh, unnamed network namespace joined to the caller's own
// namespace by a veth pair addressed inside 198.19.0.0/16 (a part of the
// 198.18.0.0/15 benchmarking range). Listeners can be opened inside the
// namespace, and its end of the link can be set down, so that packets to it
// are dropped without any reset: a black hole.
//
// Everything needs root (CAP_NET_ADMIN); Available says whether the lab can
// be built here. A Link is removed by Close, and the kernel removes the
// namespace once its last handle and socket are closed, so nothing outlives
// the test process.
package netlab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Link is a namespace and the veth pair that joins it to the namespace the
// process runs in. Its methods are safe for concurrent use.
type Link struct {
	// HostDev is the name of the veth end in the caller's namespace.
	HostDev string
	// HostAddr is the address of HostDev (a /30 with PeerAddr).
	HostAddr netip.Addr
	// PeerAddr is the address inside the namespace; listeners opened with
	// Listen are reachable on it.
	PeerAddr netip.Addr

	peerDev string
	ns      netns.NsHandle
	h       *netlink.Handle // netlink inside ns

	closeOnce sync.Once
	closeErr  error
}

// Available reports why a lab cannot be built here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netlab: needs root")
	}
	return nil
}

// counter spreads the veth names of one process.
var (
	counterMu sync.Mutex
	counter   int
)

func nextNames() (host, peer string) {
	counterMu.Lock()
	counter++
	n := counter
	counterMu.Unlock()
	base := fmt.Sprintf("ae%d%d", os.Getpid()%100000, n%100)
	return base + "h", base + "p"
}

// New builds a namespace with one veth pair and returns it. The caller
// must Close it.
func New() (*Link, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	host, peer, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	ns, err := newNamespace()
	if err != nil {
		return nil, err
	}
	l := &Link{HostAddr: host, PeerAddr: peer, ns: ns}
	l.HostDev, l.peerDev = nextNames()
	if err := l.build(); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

// freeSubnet picks a /30 inside 198.19.0.0/16 that no local interface uses.
func freeSubnet() (host, peer netip.Addr, err error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return host, peer, fmt.Errorf("netlab: list addresses: %w", err)
	}
	for range 64 {
		base := netip.AddrFrom4([4]byte{198, 19, byte(rand.IntN(256)), byte(4 * rand.IntN(64))})
		p := netip.PrefixFrom(base, 30)
		used := false
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if ok && (p.Contains(ip.Unmap()) || a.IPNet.Contains(base.AsSlice())) {
				used = true
				break
			}
		}
		if !used {
			return base.Next(), base.Next().Next(), nil
		}
	}
	return host, peer, errors.New("netlab: no free /30 in 198.19.0.0/16")
}

// newNamespace creates an unnamed namespace without moving the calling
// goroutine's thread out of its own namespace for good.
func newNamespace() (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), fmt.Errorf("netlab: current namespace: %w", err)
	}
	defer orig.Close()
	ns, err := netns.New() // moves this thread into ns
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), fmt.Errorf("netlab: new namespace: %w", err)
	}
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the runtime ends it with this goroutine
		// rather than reuse a thread in the wrong namespace.
		_ = ns.Close()
		return netns.None(), fmt.Errorf("netlab: back to own namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ns, nil
}

func (l *Link) build() error {
	h, err := netlink.NewHandleAt(l.ns)
	if err != nil {
		return fmt.Errorf("netlab: netlink in namespace: %w", err)
	}
	l.h = h
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.HostDev}, PeerName: l.peerDev}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("netlab: add veth %s: %w", l.HostDev, err)
	}
	peer, err := netlink.LinkByName(l.peerDev)
	if err != nil {
		return fmt.Errorf("netlab: find %s: %w", l.peerDev, err)
	}
	if err := netlink.LinkSetNsFd(peer, int(l.ns)); err != nil {
		return fmt.Errorf("netlab: move %s into namespace: %w", l.peerDev, err)
	}
	hostLink, err := netlink.LinkByName(l.HostDev)
	if err != nil {
		return fmt.Errorf("netlab: find %s: %w", l.HostDev, err)
	}
	if err := netlink.AddrAdd(hostLink, addr30(l.HostAddr)); err != nil {
		return fmt.Errorf("netlab: address %s: %w", l.HostDev, err)
	}
	if err := netlink.LinkSetUp(hostLink); err != nil {
		return fmt.Errorf("netlab: up %s: %w", l.HostDev, err)
	}
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("netlab: loopback in namespace: %w", err)
	}
	in, err := h.LinkByName(l.peerDev)
	if err != nil {
		return fmt.Errorf("netlab: find %s in namespace: %w", l.peerDev, err)
	}
	if err := h.AddrAdd(in, addr30(l.PeerAddr)); err != nil {
		return fmt.Errorf("netlab: address %s: %w", l.peerDev, err)
	}
	if err := h.LinkSetUp(in); err != nil {
		return fmt.Errorf("netlab: up %s: %w", l.peerDev, err)
	}
	return nil
}

func addr30(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(30, 32)}}
}

// Listen opens a TCP listener inside the namespace on addr ("host:port";
// normally PeerAddr and port 0). The socket stays in the namespace; the
// caller closes it.
func (l *Link) Listen(addr string) (net.Listener, error) {
	var ln net.Listener
	err := l.inside(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: listen in namespace: %w", err)
	}
	return ln, nil
}

// inside runs f on a thread switched into the namespace.
func (l *Link) inside(f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(l.ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return err // the thread stays locked and dies with the goroutine
	}
	runtime.UnlockOSThread()
	return ferr
}

// SetPeerDown sets the namespace's end of the link down (`ip link set DEV
// down` inside the namespace): from then on packets towards PeerAddr are
// dropped silently, with neither a reset nor an ICMP error.
func (l *Link) SetPeerDown() error {
	in, err := l.h.LinkByName(l.peerDev)
	if err != nil {
		return fmt.Errorf("netlab: find %s in namespace: %w", l.peerDev, err)
	}
	if err := l.h.LinkSetDown(in); err != nil {
		return fmt.Errorf("netlab: down %s: %w", l.peerDev, err)
	}
	return nil
}

// Close deletes the veth pair and releases the namespace (the kernel
// removes it once the sockets opened in it are closed too). It is
// idempotent.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		var errs []error
		if hostLink, err := netlink.LinkByName(l.HostDev); err == nil {
			if err := netlink.LinkDel(hostLink); err != nil {
				errs = append(errs, fmt.Errorf("netlab: delete %s: %w", l.HostDev, err))
			}
		}
		if l.h != nil {
			l.h.Close()
		}
		if l.ns.IsOpen() {
			if err := l.ns.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}
