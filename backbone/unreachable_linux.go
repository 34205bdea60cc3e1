package backbone

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
)

// icmpConn is the UDP socket of one dial slot. It asks the kernel for the
// ICMP errors of its datagrams (IP_RECVERR), so that a dial to a region
// whose port is closed fails at the first port-unreachable instead of
// waiting out the handshake timeout. quic-go would close the whole
// transport on such a read error; icmpConn keeps every ICMP error away
// from it, drains the kernel's error queue, and reports port-unreachable
// to the slot, which cancels the dial in progress and ignores it
// otherwise (an established connection must not be cut by a possibly
// spoofed ICMP packet: QUIC's own idle timeout judges it).
type icmpConn struct {
	*net.UDPConn
	batch     *ipv4.PacketConn
	onRefused atomic.Pointer[func(error)]
}

// newICMPConn wraps udp; when the kernel refuses IP_RECVERR it returns udp
// unchanged, and dials then time out as before.
func newICMPConn(udp *net.UDPConn) net.PacketConn {
	rc, err := udp.SyscallConn()
	if err != nil {
		return udp
	}
	var v4, v6 error
	_ = rc.Control(func(fd uintptr) {
		v4 = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_RECVERR, 1)
		v6 = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_RECVERR, 1)
	})
	if v4 != nil && v6 != nil {
		return udp
	}
	return &icmpConn{UDPConn: udp, batch: ipv4.NewPacketConn(udp)}
}

// setOnRefused sets (nil: clears) the callback for port-unreachable.
func (c *icmpConn) setOnRefused(f func(error)) {
	if f == nil {
		c.onRefused.Store(nil)
		return
	}
	c.onRefused.Store(&f)
}

// ReadBatch is what quic-go reads with on Linux (see quic-go's batchConn).
func (c *icmpConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	for {
		n, err := c.batch.ReadBatch(ms, flags)
		if err == nil || !icmpError(err) {
			return n, err
		}
		c.drainErrors()
		if f := c.onRefused.Load(); f != nil && errors.Is(err, syscall.ECONNREFUSED) {
			(*f)(err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// WriteMsgUDP is what quic-go writes with. The kernel reports a pending
// ICMP error on the next send as well as on the next read; the datagram
// is then not sent, as if lost on the way, and QUIC's loss recovery
// retransmits it.
func (c *icmpConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	n, oobn, err = c.UDPConn.WriteMsgUDP(b, oob, addr)
	if err == nil || !icmpError(err) || errors.Is(err, syscall.EMSGSIZE) {
		return n, oobn, err
	}
	c.drainErrors()
	if f := c.onRefused.Load(); f != nil && errors.Is(err, syscall.ECONNREFUSED) {
		(*f)(err)
	}
	return len(b), len(oob), nil
}

// icmpError reports whether a read error is an ICMP error the kernel
// reported for an earlier datagram rather than a failure of the socket.
func icmpError(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN,
		syscall.ENETDOWN, syscall.EMSGSIZE, syscall.EPROTO, syscall.ENOPROTOOPT, syscall.EACCES:
		return true
	}
	return false
}

// drainErrors empties the socket's error queue, which IP_RECVERR fills
// with one entry per ICMP error and which counts against the receive
// buffer.
func (c *icmpConn) drainErrors() {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 512)
	oob := make([]byte, 512)
	// Control, not Read: the read lock is held by quic-go's reader,
	// blocked in ReadBatch; MSG_DONTWAIT never waits.
	_ = rc.Control(func(fd uintptr) {
		for range 64 {
			if _, _, _, _, err := syscall.Recvmsg(int(fd), buf, oob, syscall.MSG_ERRQUEUE|syscall.MSG_DONTWAIT); err != nil {
				break
			}
		}
	})
}
