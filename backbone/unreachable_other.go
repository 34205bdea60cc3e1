//go:build !linux

package backbone

import "net"

// icmpConn is Linux-only: elsewhere a dial to a closed port waits for the
// handshake timeout.
type icmpConn struct{ net.PacketConn }

func newICMPConn(udp *net.UDPConn) net.PacketConn { return udp }

func (c *icmpConn) setOnRefused(func(error)) {}
