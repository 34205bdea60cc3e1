package backbone

import (
	"log/slog"
	"net"
	"sync"
	"syscall"
)

// SocketBufferSize is the UDP buffer size quic-go recommends (7 MiB) so that
// bursts at high rates are not dropped by the kernel.
const SocketBufferSize = 7 << 20

var bufWarnOnce sync.Once

// SetSocketBuffers raises the receive and send buffers of a UDP socket to
// SocketBufferSize, past net.core.rmem_max when running as root
// (SO_RCVBUFFORCE). Otherwise it warns once, naming the sysctl to raise.
func SetSocketBuffers(c *net.UDPConn, log *slog.Logger) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	var forceErr error
	_ = rc.Control(func(fd uintptr) {
		forceErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, SocketBufferSize)
		if forceErr == nil {
			forceErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, SocketBufferSize)
		}
	})
	if forceErr == nil {
		return
	}
	_ = c.SetReadBuffer(SocketBufferSize)
	_ = c.SetWriteBuffer(SocketBufferSize)
	bufWarnOnce.Do(func() {
		log.Warn("could not force UDP socket buffers (not root?); raise net.core.rmem_max and net.core.wmem_max to 7340032",
			"err", forceErr)
	})
}
