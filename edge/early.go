package edge

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// EarlyData says which of a client's first bytes the edge sends together
// with a new flow's header, before the region has answered. Sending them
// early saves one backbone round trip per new connection; the price is
// that a hedged or retried attempt carries the same bytes again, and the
// loser's endpoint may have received them before it was cancelled.
type EarlyData uint8

const (
	// EarlyOff sends no client byte before the region's answer: a hedge or
	// retry can never deliver anything twice.
	EarlyOff EarlyData = iota
	// EarlyTLS sends a leading TLS ClientHello (complete handshake records
	// only) early. Delivering a ClientHello to an endpoint that is then
	// abandoned is harmless: no application data is ever sent before the
	// handshake completes, and TLS 1.3 0-RTT data (records of another type)
	// waits for the answer.
	EarlyTLS
	// EarlyAlways sends whatever the client sent first (up to MaxEarlyData)
	// early. Use it only for protocols whose first request may safely
	// reach two endpoints.
	EarlyAlways
)

// ParseEarlyData parses the configuration names "off", "tls" and "always".
func ParseEarlyData(s string) (EarlyData, error) {
	switch s {
	case "off":
		return EarlyOff, nil
	case "tls":
		return EarlyTLS, nil
	case "always":
		return EarlyAlways, nil
	}
	return EarlyOff, errors.New(`early data: must be "off", "tls" or "always"`)
}

// String returns the configuration name.
func (m EarlyData) String() string {
	switch m {
	case EarlyTLS:
		return "tls"
	case EarlyAlways:
		return "always"
	}
	return "off"
}

// MaxEarlyData is the most client bytes a flow holds while it is set up:
// one TLS record of the largest size.
const MaxEarlyData = 5 + 1<<14

var earlyPool = sync.Pool{New: func() any { b := make([]byte, MaxEarlyData); return &b }}

// aLongTimeAgo is a read deadline that wakes a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// early holds what a client sent while its flow is being set up.
type early struct {
	mode EarlyData
	buf  *[]byte // from earlyPool; nil until the first read
	n    int     // bytes read
	fwd  int     // leading bytes that may reach two endpoints (replay-safe)
	done bool    // nothing more may travel before an answer
	eof  bool    // the client half-closed
	err  error   // the client connection failed
	// hold: the flow is held (wire.FlagHold): every byte read may travel
	// before an answer, since the region delivers it once; only one
	// attempt at a time may then carry more than the replay-safe prefix.
	hold bool
}

// setHold makes every byte read sendable before an answer.
func (ed *early) setHold() {
	ed.hold = true
	ed.classify()
}

// sendable returns the bytes that may travel before an answer: all of
// them once the flow is held, else the replay-safe prefix.
func (ed *early) sendable() []byte {
	if ed == nil {
		return nil
	}
	if ed.hold {
		return ed.bytes()
	}
	return ed.forwardable()
}

// unsafe reports whether the first sent bytes go beyond the replay-safe
// prefix: an attempt that carried them must be the only one to deliver.
func (ed *early) unsafe(sent int) bool { return ed != nil && sent > ed.fwd }

// bytes returns everything read so far.
func (ed *early) bytes() []byte {
	if ed == nil || ed.buf == nil {
		return nil
	}
	return (*ed.buf)[:ed.n]
}

// forwardable returns the bytes that may travel before an answer.
func (ed *early) forwardable() []byte {
	if ed == nil {
		return nil
	}
	return ed.bytes()[:ed.fwd]
}

// release returns the buffer to the pool.
func (ed *early) release() {
	if ed != nil && ed.buf != nil {
		earlyPool.Put(ed.buf)
		ed.buf = nil
	}
}

// poll reads what the client has already sent, without waiting.
func (ed *early) poll(c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		ed.done = true
		return
	}
	ed.grab()
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), (*ed.buf)[ed.n:], syscall.MSG_DONTWAIT)
		return true
	})
	switch {
	case err != nil:
		ed.err = err
	case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
	case rerr != nil:
		ed.err = rerr
	case n == 0:
		ed.eof = true
	default:
		ed.n += n
	}
	ed.classify()
}

// read waits for more client bytes. It returns false when reading should
// stop: the deadline passed (the answer came), or done.
func (ed *early) read(c net.Conn) bool {
	ed.grab()
	n, err := c.Read((*ed.buf)[ed.n:])
	ed.n += n
	switch {
	case err == nil:
	case errors.Is(err, os.ErrDeadlineExceeded):
		ed.classify()
		return false
	case errors.Is(err, io.EOF):
		ed.eof = true
	default:
		ed.err = err
	}
	ed.classify()
	return !ed.done
}

func (ed *early) grab() {
	if ed.buf == nil {
		ed.buf = earlyPool.Get().(*[]byte)
	}
}

// classify updates fwd and done from what has been read.
func (ed *early) classify() {
	switch ed.mode {
	case EarlyAlways:
		ed.fwd = ed.n
	case EarlyTLS:
		ed.fwd, ed.done = clientHelloPrefix(ed.bytes())
	default:
		ed.fwd, ed.done = 0, true
	}
	if ed.hold {
		ed.done = false
	}
	if ed.n == MaxEarlyData || ed.eof || ed.err != nil {
		ed.done = true
	}
}

// TLS record framing (RFC 8446 section 5.1).
const (
	recordHeaderLen      = 5
	recordHandshake      = 22
	handshakeClientHello = 1
	maxPlaintextRecord   = 1 << 14
)

// clientHelloPrefix returns how many leading bytes of b are complete TLS
// handshake records that begin with a ClientHello, and whether no more
// bytes could be added to them: the ClientHello is complete, b does not
// start with one, or a record of another type follows.
func clientHelloPrefix(b []byte) (n int, done bool) {
	helloLen := -1 // the ClientHello message's length with its header, once known
	got := 0       // handshake bytes in complete records
	for {
		if helloLen >= 0 && got >= helloLen {
			return n, true
		}
		rest := b[n:]
		if len(rest) >= 1 && rest[0] != recordHandshake ||
			len(rest) >= 2 && rest[1] != 3 ||
			len(rest) >= 3 && rest[2] > 4 {
			return n, true
		}
		if n == 0 && len(rest) > recordHeaderLen && rest[recordHeaderLen] != handshakeClientHello {
			return 0, true
		}
		if len(rest) < recordHeaderLen {
			return n, false
		}
		l := int(binary.BigEndian.Uint16(rest[3:5]))
		if l == 0 || l > maxPlaintextRecord || n == 0 && l < 4 {
			return n, true
		}
		if len(rest) < recordHeaderLen+l {
			return n, false
		}
		if n == 0 {
			helloLen = 4 + (int(rest[6])<<16 | int(rest[7])<<8 | int(rest[8]))
		}
		got += l
		n += recordHeaderLen + l
	}
}
