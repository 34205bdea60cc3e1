package bgp

import (
	"net"

	"golang.org/x/sys/unix"
)

// md5Supported reports why this kernel cannot sign TCP segments with MD5
// (RFC 2385), or nil when it can. GoBGP only logs a warning when it cannot
// set a neighbour's key and then runs the session unsigned; the speaker
// refuses instead.
func md5Supported() error {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	sc, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		return err
	}
	sig := &unix.TCPMD5Sig{Keylen: 4}
	copy(sig.Key[:], "test")
	sig.Addr.Family = unix.AF_INET
	copy(sig.Addr.Data[2:], []byte{127, 0, 0, 1})
	var serr error
	if err := sc.Control(func(fd uintptr) {
		serr = unix.SetsockoptTCPMD5Sig(int(fd), unix.IPPROTO_TCP, unix.TCP_MD5SIG, sig)
	}); err != nil {
		return err
	}
	return serr
}
