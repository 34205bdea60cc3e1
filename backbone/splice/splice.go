// Package splice joins a TCP connection and a QUIC stream so that they
// behave as one connection: bytes flow both ways, a FIN on one side becomes
// a FIN on the other (half-close), a reset becomes a reset, and a flow that
// stays silent past its idle timeout is cut.
package splice

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone/wire"
)

// TCP is the TCP side of a splice; *net.TCPConn satisfies it.
type TCP interface {
	net.Conn
	CloseWrite() error
	SetLinger(sec int) error
}

// Stream is the QUIC side of a splice; *quic.Stream satisfies it.
type Stream interface {
	io.ReadWriter
	Close() error
	CancelRead(quic.StreamErrorCode)
	CancelWrite(quic.StreamErrorCode)
	SetReadDeadline(time.Time) error
}

var (
	_ TCP    = (*net.TCPConn)(nil)
	_ Stream = (*quic.Stream)(nil)
)

// Copy buffer sizes: every flow holds SmallBufSize per direction; a flow
// moving data borrows a BufSize buffer from a pool while it does.
const (
	SmallBufSize = 2 << 10
	BufSize      = 64 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, BufSize); return &b }}

// Result says how a splice ended.
type Result struct {
	// Up counts bytes from the TCP side to the stream, Down the other way.
	Up, Down int64
	// Reset is set when either side was reset (or failed) and the other
	// side was reset in turn.
	Reset bool
	// Idle is set when the flow was cut for idleness.
	Idle bool
}

type joint struct {
	c       TCP
	s       Stream
	idle    time.Duration
	last    atomic.Int64 // unix nanoseconds of the last byte either way
	aborted atomic.Bool
	idleCut atomic.Bool
}

// Join copies between c and s until both directions have ended, then
// closes c. It owns both: when it returns, c is closed and s is either
// finished both ways or cancelled. idle > 0 cuts a flow with no bytes in
// either direction for that long (with a reset on both sides).
func Join(c TCP, s Stream, idle time.Duration) Result {
	j := &joint{c: c, s: s, idle: idle}
	j.touch()
	var up int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		up = j.upstream()
	}()
	down := j.downstream()
	<-done
	if !j.aborted.Load() {
		_ = c.Close()
	}
	return Result{Up: up, Down: down, Reset: j.aborted.Load() && !j.idleCut.Load(), Idle: j.idleCut.Load()}
}

func (j *joint) touch() { j.last.Store(time.Now().UnixNano()) }

// abort resets both sides once: RST towards the TCP peer, RESET_STREAM and
// STOP_SENDING towards the stream peer.
func (j *joint) abort(code quic.StreamErrorCode) {
	if !j.aborted.CompareAndSwap(false, true) {
		return
	}
	if code == wire.StreamIdle {
		j.idleCut.Store(true)
	}
	_ = j.c.SetLinger(0)
	_ = j.c.Close()
	j.s.CancelRead(code)
	j.s.CancelWrite(code)
}

// stillFresh reports, after a read deadline fired, whether the flow saw
// traffic within the idle timeout, and if so when to look again.
func (j *joint) stillFresh() (time.Time, bool) {
	next := time.Unix(0, j.last.Load()).Add(j.idle)
	return next, time.Now().Before(next)
}

func (j *joint) deadline() time.Time {
	if j.idle <= 0 {
		return time.Time{}
	}
	return time.Now().Add(j.idle)
}

// upstream copies TCP → stream; the client's FIN becomes a stream FIN.
func (j *joint) upstream() int64 {
	return j.pump(j.c.Read, j.s.Write, j.c.SetReadDeadline, func() { _ = j.s.Close() })
}

// downstream copies stream → TCP; the stream's FIN becomes a TCP FIN.
func (j *joint) downstream() int64 {
	return j.pump(j.s.Read, j.c.Write, j.s.SetReadDeadline, func() { _ = j.c.CloseWrite() })
}

// pump copies one direction until EOF (then fin), an error (then a reset
// both ways) or idleness. An idle flow holds only a small buffer per
// direction; a busy one borrows a BufSize buffer from a pool and gives it
// back as soon as a read returns no more than the small buffer holds.
func (j *joint) pump(read, write func([]byte) (int, error), setDeadline func(time.Time) error, fin func()) int64 {
	small := make([]byte, SmallBufSize)
	buf := small
	var big *[]byte
	defer func() {
		if big != nil {
			bufPool.Put(big)
		}
	}()
	var total int64
	if j.idle > 0 {
		_ = setDeadline(j.deadline())
	}
	for {
		n, err := read(buf)
		if n > 0 {
			total += int64(n)
			j.touch()
			if j.idle > 0 {
				_ = setDeadline(j.deadline())
			}
			if _, werr := write(buf[:n]); werr != nil {
				j.abort(wire.StreamReset)
				return total
			}
			switch {
			case big == nil && n == len(small):
				big = bufPool.Get().(*[]byte)
				buf = *big
			case big != nil && n <= len(small):
				bufPool.Put(big)
				big, buf = nil, small
			}
		}
		if err == nil {
			continue
		}
		switch {
		case err == io.EOF:
			fin()
			return total
		case errors.Is(err, os.ErrDeadlineExceeded) && !j.aborted.Load():
			if next, fresh := j.stillFresh(); fresh {
				_ = setDeadline(next)
				continue
			}
			j.abort(wire.StreamIdle)
		default:
			j.abort(wire.StreamReset)
		}
		return total
	}
}
