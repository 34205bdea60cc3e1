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
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone/wire"
)

// TCP is the TCP side of a splice; *net.TCPConn satisfies it.
type TCP interface {
	net.Conn
	CloseWrite() error
	SetLinger(sec int) error
	SyscallConn() (syscall.RawConn, error)
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

// Copy buffer sizes. An idle flow holds no buffer on its TCP side (it
// waits for the socket to become readable first) and SmallBufSize on its
// stream side; a flow moving data borrows a BufSize buffer from a pool and
// gives it back when a read returns no more than SmallBufSize.
const (
	SmallBufSize = 512
	BufSize      = 64 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, BufSize); return &b }}

// Side names one side of a splice.
type Side uint8

const (
	// SideNone: neither side.
	SideNone Side = iota
	// SideTCP is the TCP connection.
	SideTCP
	// SideStream is the QUIC stream.
	SideStream
)

// Result says how a splice ended.
type Result struct {
	// Up counts bytes from the TCP side to the stream, Down the other way.
	Up, Down int64
	// Reset is set when either side was reset (or failed) and the other
	// side was reset in turn.
	Reset bool
	// Idle is set when the flow was cut for idleness.
	Idle bool
	// FirstFIN is the side that ended its direction cleanly first
	// (SideNone when neither did before the end).
	FirstFIN Side
	// ResetBy is the side whose failure reset the flow, and ResetErr that
	// failure (SideNone and nil without a reset, and for an idle cut).
	ResetBy  Side
	ResetErr error
	// SegsIn and SegsOut are the TCP segments the TCP side received and
	// sent (TCP_INFO), read just before it was closed; zero unless
	// Options.TCPInfo asked for them, or where the kernel does not say.
	SegsIn, SegsOut uint64
}

// Options tune a splice. The zero value cuts no idle flow and counts
// nothing beyond the Result.
type Options struct {
	// Idle > 0 cuts a flow with no bytes in either direction for that
	// long (with a reset on both sides).
	Idle time.Duration
	// Up and Down, when set, are added the bytes copied each way as they
	// are copied (running totals shared by many flows).
	Up, Down *atomic.Uint64
	// TCPInfo reads the TCP side's segment counts into the Result.
	TCPInfo bool
	// Buffered says the TCP side holds bytes above its socket (TLS
	// terminated in the process): its reads must not wait for the socket
	// to become readable first, so an idle flow keeps a small buffer there
	// too.
	Buffered bool
}

type joint struct {
	c       TCP
	rc      syscall.RawConn // c's descriptor, to wait for readability
	peek    [1]byte
	s       Stream
	idle    time.Duration
	opts    Options
	last    atomic.Int64 // unix nanoseconds of the last byte either way
	aborted atomic.Bool
	idleCut atomic.Bool
	// Set by the first abort (resetBy, resetErr) or the first FIN
	// (firstFIN), read once both directions have ended.
	resetBy  Side
	resetErr error
	firstFIN atomic.Uint32
	// segsIn and segsOut are read before c is closed (TCPInfo).
	segsIn, segsOut uint64
}

// Join copies between c and s until both directions have ended, then
// closes c. It owns both: when it returns, c is closed and s is either
// finished both ways or cancelled. idle > 0 cuts a flow with no bytes in
// either direction for that long (with a reset on both sides).
func Join(c TCP, s Stream, idle time.Duration) Result {
	done := make(chan Result, 1)
	Start(c, s, idle, func(r Result) { done <- r })
	return <-done
}

// Start is Join in the background: it copies in two goroutines of its own
// and returns at once, so that the caller's goroutine (and its stack) need
// not wait with an idle flow. done is called once, when both directions
// have ended and c is closed.
func Start(c TCP, s Stream, idle time.Duration, done func(Result)) {
	StartWith(c, s, Options{Idle: idle}, done)
}

// StartWith is Start with options.
func StartWith(c TCP, s Stream, opts Options, done func(Result)) {
	j := &joint{c: c, s: s, idle: opts.Idle, opts: opts}
	j.touch()
	if rc, err := c.SyscallConn(); err == nil {
		j.rc = rc
	}
	var up, down int64
	var left atomic.Int32
	left.Store(2)
	finish := func() {
		if left.Add(-1) != 0 {
			return
		}
		if !j.aborted.Load() {
			j.readTCPInfo()
			_ = c.Close()
		}
		r := Result{Up: up, Down: down, Reset: j.aborted.Load() && !j.idleCut.Load(), Idle: j.idleCut.Load(),
			FirstFIN: Side(j.firstFIN.Load()), SegsIn: j.segsIn, SegsOut: j.segsOut}
		if r.Reset {
			r.ResetBy, r.ResetErr = j.resetBy, j.resetErr
		}
		done(r)
	}
	go func() {
		up = j.upstream()
		finish()
	}()
	go func() {
		down = j.downstream()
		finish()
	}()
}

func (j *joint) touch() { j.last.Store(time.Now().UnixNano()) }

// abort resets both sides once: RST towards the TCP peer, RESET_STREAM and
// STOP_SENDING towards the stream peer. by is the side that failed with
// err (SideNone for an idle cut).
func (j *joint) abort(code quic.StreamErrorCode, by Side, err error) {
	if !j.aborted.CompareAndSwap(false, true) {
		return
	}
	if code == wire.StreamIdle {
		j.idleCut.Store(true)
	}
	j.resetBy, j.resetErr = by, err
	j.readTCPInfo()
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
	var wait func() error
	if j.rc != nil && !j.opts.Buffered {
		wait = j.waitReadable
	}
	return j.pump(j.c.Read, j.s.Write, SideTCP, j.c.SetReadDeadline, wait, func() { _ = j.s.Close() })
}

// downstream copies stream → TCP; the stream's FIN becomes a TCP FIN.
func (j *joint) downstream() int64 {
	return j.pump(j.s.Read, j.c.Write, SideStream, j.s.SetReadDeadline, nil, func() { _ = j.c.CloseWrite() })
}

// waitReadable blocks, holding no buffer, until the TCP socket has data, an
// EOF or an error to read, or its read deadline passes. Like the runtime's
// own reads it looks first (a non-blocking MSG_PEEK of one byte) and parks
// on the poller only after EAGAIN, so no readiness edge is missed.
//
// A socket error (a reset) is reported by the peek and cleared by it, so
// waitReadable returns it rather than leaving the next read to see EOF.
func (j *joint) waitReadable() error {
	var perr error
	err := j.rc.Read(func(fd uintptr) bool {
		_, _, e := syscall.Recvfrom(int(fd), j.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch e {
		case syscall.EAGAIN:
			return false
		case nil, syscall.EINTR:
		default:
			perr = os.NewSyscallError("recvfrom", e)
		}
		return true
	})
	if err != nil {
		return err
	}
	return perr
}

// pump copies one direction until EOF (then fin), an error (then a reset
// both ways) or idleness. With wait set, an idle direction holds no buffer:
// it waits for readability, then borrows a BufSize buffer from the pool.
// Without it, an idle direction holds a SmallBufSize buffer and borrows a
// big one once a read fills the small one. Either way the big buffer goes
// back to the pool as soon as a read returns no more than SmallBufSize.
//
// from is the side read; bytes from the TCP side count towards
// Options.Up, the others towards Options.Down.
func (j *joint) pump(read, write func([]byte) (int, error), from Side, setDeadline func(time.Time) error, wait func() error, fin func()) int64 {
	to := SideTCP
	tally := j.opts.Down
	if from == SideTCP {
		to, tally = SideStream, j.opts.Up
	}
	var small []byte
	if wait == nil {
		small = make([]byte, SmallBufSize)
	}
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
		var n int
		var err error
		buf := small
		if big == nil && wait != nil {
			if err = wait(); err == nil {
				big = bufPool.Get().(*[]byte)
			}
		}
		if big != nil {
			buf = *big
		}
		if err == nil {
			n, err = read(buf)
		}
		if n > 0 {
			total += int64(n)
			j.touch()
			if j.idle > 0 {
				_ = setDeadline(j.deadline())
			}
			if _, werr := write(buf[:n]); werr != nil {
				j.abort(wire.StreamReset, to, werr)
				return total
			}
			if tally != nil {
				tally.Add(uint64(n))
			}
			switch {
			case big == nil && n == len(small):
				big = bufPool.Get().(*[]byte)
			case big != nil && n <= SmallBufSize:
				bufPool.Put(big)
				big = nil
			}
		}
		if err == nil {
			continue
		}
		switch {
		case err == io.EOF:
			j.firstFIN.CompareAndSwap(uint32(SideNone), uint32(from))
			fin()
			return total
		case errors.Is(err, os.ErrDeadlineExceeded) && !j.aborted.Load():
			if next, fresh := j.stillFresh(); fresh {
				_ = setDeadline(next)
				continue
			}
			j.abort(wire.StreamIdle, SideNone, nil)
		default:
			j.abort(wire.StreamReset, from, err)
		}
		return total
	}
}
