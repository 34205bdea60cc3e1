package splice

import (
	"crypto/tls"
	"net"
	"syscall"
)

// TLS is the TCP side of a splice when TLS runs over the TCP connection in
// this process (the edge terminating a client's TLS, a region
// re-encrypting towards an endpoint): reads and writes go through TLS,
// half-close sends close_notify and then a TCP FIN, and a reset resets the
// TCP connection. Splice it with Options.Buffered: TLS may hold decrypted
// bytes that the socket no longer shows.
type TLS struct {
	*tls.Conn
	// Raw is the TCP connection under Conn.
	Raw *net.TCPConn
}

var _ TCP = (*TLS)(nil)

// CloseWrite sends close_notify, then shuts the TCP connection's write
// side down: the peer sees the end both as TLS and as TCP know it.
func (c *TLS) CloseWrite() error {
	err := c.Conn.CloseWrite()
	if werr := c.Raw.CloseWrite(); err == nil {
		err = werr
	}
	return err
}

// SetLinger sets SO_LINGER on the TCP connection (0: close with a reset).
func (c *TLS) SetLinger(sec int) error { return c.Raw.SetLinger(sec) }

// SyscallConn returns the TCP connection's descriptor (TCP_INFO).
func (c *TLS) SyscallConn() (syscall.RawConn, error) { return c.Raw.SyscallConn() }
