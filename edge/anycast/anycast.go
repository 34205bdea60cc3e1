// Package anycast makes an edge's anycast addresses local: it adds them to
// the loopback interface through netlink (as /32 and /128 host addresses)
// and removes, at release, exactly the ones it added.
package anycast

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
)

// Bind adds each address to the interface named dev (usually "lo") unless
// it is already there. The returned release removes the addresses Bind
// added, and nothing else; it is safe to call more than once.
func Bind(dev string, addrs []netip.Addr) (release func() error, err error) {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("anycast: interface %s: %w", dev, err)
	}
	var added []*netlink.Addr
	release = func() error {
		var errs []error
		for _, a := range added {
			if err := netlink.AddrDel(link, a); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("anycast: remove %s from %s: %w", a.IPNet, dev, err))
			}
		}
		added = nil
		return errors.Join(errs...)
	}
	for _, a := range addrs {
		bits := 128
		if a.Is4() {
			bits = 32
		}
		na := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if bits == 128 {
			// IFA_F_NODAD: without it the address stays tentative for a
			// moment even on lo, and the listeners' bind fails with
			// EADDRNOTAVAIL.
			na.Flags = 0x2
		}
		if err := netlink.AddrAdd(link, na); err != nil {
			if errors.Is(err, syscall.EEXIST) {
				continue // already local: not ours to remove
			}
			_ = release()
			return nil, fmt.Errorf("anycast: add %s to %s: %w", a, dev, err)
		}
		added = append(added, na)
	}
	return release, nil
}
