//go:build !linux

package netlab

import (
	"errors"
	"net"
	"net/netip"
)

// Link is a namespace joined to the caller's by a veth pair (Linux only).
type Link struct {
	HostDev            string
	HostAddr, PeerAddr netip.Addr
}

var errUnsupported = errors.New("netlab: network namespaces need Linux")

// Available reports why a lab cannot be built here.
func Available() error { return errUnsupported }

// New fails outside Linux.
func New() (*Link, error) { return nil, errUnsupported }

// Listen fails outside Linux.
func (l *Link) Listen(addr string) (net.Listener, error) { return nil, errUnsupported }

// SetPeerDown fails outside Linux.
func (l *Link) SetPeerDown() error { return errUnsupported }

// Close does nothing outside Linux.
func (l *Link) Close() error { return nil }
