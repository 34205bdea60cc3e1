// Package stripe carries one flow's byte stream over several lanes — QUIC
// streams on different backbone connections, each with its own congestion
// window and its own UDP 5-tuple — and reassembles it in order at the far
// end, in both directions. It is the backbone's answer to loss on a long
// path: quic-go's congestion controller (NewReno, not configurable) halves a
// connection's window at every random loss and regrows it by one packet per
// round trip, so one connection on a lossy 200 ms path moves a few Mbit/s;
// a flow spread over several connections has several windows, and a loss
// halves only one of them.
//
// The bytes travel in chunks with their offset in the flow. Lanes pull the
// next chunk as soon as they can send (a fast lane carries more), the
// receiver puts chunks back in order, and cumulative acknowledgements say
// how far the peer has received and how far its reader has consumed. A
// sender never has more than Window bytes beyond what the peer's reader
// consumed, so neither the reorder buffer nor the retransmission buffer can
// exceed Window, however slow one lane is. A lane that dies has its
// unacknowledged chunks sent again on the others; so has a lane whose
// oldest chunk stays unacknowledged for StallAfter (a stalled path).
//
// Frames on a lane, both directions (integers big-endian):
//
//	DATA  type=1  offset(8) length(2) payload(length)
//	ACK   type=2  received(8) consumed(8)
//	FIN   type=3  offset(8)                 the direction ends at offset
//
// See docs/backbone-protocol.md, "Striped flows".
package stripe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// ChunkSize is the most payload one DATA frame carries.
const ChunkSize = 16 << 10

// Frame types.
const (
	frameData = 1
	frameAck  = 2
	frameFin  = 3
)

// Lane is one path of a striped flow; *quic.Stream satisfies it. The
// stripe owns its lanes: it closes or cancels each when done.
type Lane interface {
	io.Reader
	io.Writer
	Close() error
	CancelRead(quic.StreamErrorCode)
	CancelWrite(quic.StreamErrorCode)
}

var _ Lane = (*quic.Stream)(nil)

// Config tunes a striped flow.
type Config struct {
	// Window bounds the bytes in flight in each direction beyond what the
	// peer's reader has consumed: the memory one flow may hold at either
	// end for reordering and for retransmission (default 16 MiB).
	Window int
	// StallAfter is how long a lane's oldest unacknowledged chunk may wait
	// before its chunks are sent again on the other lanes (default 1 s).
	StallAfter time.Duration
	// IsReset reports whether a lane error is the peer resetting the whole
	// flow (rather than the lane's path dying). Default: never.
	IsReset func(error) bool
	// ResetCode is the stream error code sent on every lane when the flow
	// is reset.
	ResetCode quic.StreamErrorCode
	// GrowAfter, with Grow set, is how many bytes (either direction) the
	// flow carries before Grow is called, once, to add lanes.
	GrowAfter int64
	// Grow is called (in its own goroutine) to open more lanes; it calls
	// AddLane for each.
	Grow func(*Conn)
	// Done, if set, is called once when every lane's goroutines have ended.
	Done func()
	// Early are bytes already sent on the first lane as DATA frames from
	// offset 0 (AppendData) before the flow started, e.g. while waiting for
	// the region's answer; they are kept for resending until acknowledged.
	Early []byte
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// ErrReset is returned by Read and Write after the flow was reset; a
// reset by the peer wraps the lane's error too (its reset code).
var ErrReset = errors.New("stripe: flow reset")

// ErrLanes is returned when every lane of the flow has died.
var ErrLanes = errors.New("stripe: every lane died")

type chunk struct {
	off  uint64
	data []byte
	fin  bool
	lane *lane // the lane it was last sent on
	sent time.Time
}

func (c *chunk) end() uint64 { return c.off + uint64(len(c.data)) }

// ackedBy reports whether the peer has received c, given that it received
// everything below recv. A FIN counts as one byte at its offset in the
// acknowledgement space, so that the peer acknowledges it explicitly.
func (c *chunk) ackedBy(recv uint64) bool {
	if c.fin {
		return recv > c.off
	}
	return recv >= c.end()
}

type lane struct {
	l       Lane
	ackSeq  uint64 // the last acknowledgement sent on this lane
	dead    bool
	stalled bool
	rdone   bool // reader ended
	wdone   bool // writer ended
}

// Conn is a striped flow. Its methods are safe for concurrent use: Read
// and Write may run in different goroutines, as the splice does.
type Conn struct {
	cfg Config

	// mu guards everything below; cond signals any change of it.
	mu    sync.Mutex
	cond  *sync.Cond
	lanes []*lane
	err   error // sticky: reset, or every lane dead
	grown bool
	moved int64 // bytes carried either way, for GrowAfter
	live  int   // lane goroutines still running
	// idle is closed when every lane goroutine has ended, so that the
	// monitor ends with the flow instead of at its next tick.
	idle     chan struct{}
	idleDone bool
	done     bool // Done called

	// Sending.
	sendNext  uint64   // offset the next written byte gets
	unsent    []*chunk // in offset order
	retx      []*chunk // to send again, in offset order
	inflight  []*chunk // sent, not known received, in send order
	peerRecv  uint64   // the peer received everything below
	peerRead  uint64   // the peer's reader consumed everything below
	finQueued bool
	writeShut bool // CancelWrite
	finOff    uint64
	allClosed bool   // every lane reader saw a clean end: the peer is done
	ackSeq    uint64 // acknowledgements requested so far; every lane sends the latest

	// Receiving.
	recvNext  uint64            // everything below has arrived
	readPos   uint64            // everything below was consumed by Read
	ooo       map[uint64][]byte // arrived beyond recvNext
	ready     [][]byte          // contiguous, not yet consumed; ready[0][headPos:]
	headPos   int
	peerFin   uint64
	peerFinOK bool
	ackRecv   uint64 // received (FIN included) when the last acknowledgement was requested
	ackRead   uint64 // consumed when the last acknowledgement was requested
	deadline  time.Time
	dlTimer   *time.Timer
	readShut  bool // CancelRead
}

// New starts a striped flow on its first lane. More lanes join with
// AddLane (or Config.Grow).
func New(first Lane, cfg Config) *Conn {
	if cfg.Window <= 0 {
		cfg.Window = 16 << 20
	}
	if cfg.StallAfter <= 0 {
		cfg.StallAfter = time.Second
	}
	if cfg.IsReset == nil {
		cfg.IsReset = func(error) bool { return false }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Conn{cfg: cfg, ooo: map[uint64][]byte{}, idle: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	// The early bytes count as sent before the first lane's reader starts:
	// the peer's acknowledgement of them is often waiting on the lane
	// already (it follows the answer), and read before that it would look
	// like an acknowledgement of bytes never sent.
	ln := &lane{l: first}
	c.lanes = append(c.lanes, ln)
	for off := 0; off < len(cfg.Early); off += ChunkSize {
		data := cfg.Early[off:min(off+ChunkSize, len(cfg.Early))]
		c.inflight = append(c.inflight, &chunk{off: uint64(off), data: data, lane: ln, sent: cfg.Now()})
	}
	c.sendNext = uint64(len(cfg.Early))
	c.moved = int64(len(cfg.Early))
	c.live = 3 // the first lane's reader and writer, and the monitor
	c.startLane(ln)
	go c.monitor()
	return c
}

// testHookStartLane, when set (by tests), is called as a lane's goroutines
// are about to start.
var testHookStartLane func(*Conn)

// startLane starts l's reader and writer.
func (c *Conn) startLane(l *lane) {
	if testHookStartLane != nil {
		testHookStartLane(c)
	}
	go c.reader(l)
	go c.writer(l)
}

// AddLane adds a path to the flow. After the flow has ended, the lane is
// cancelled at once.
func (c *Conn) AddLane(l Lane) {
	c.mu.Lock()
	if c.err != nil || (c.finishedLocked() && len(c.lanes) > 0) {
		c.mu.Unlock()
		l.CancelRead(c.cfg.ResetCode)
		l.CancelWrite(c.cfg.ResetCode)
		return
	}
	ln := &lane{l: l}
	c.lanes = append(c.lanes, ln)
	c.live += 2
	c.mu.Unlock()
	c.startLane(ln)
}

// Lanes returns how many lanes are alive.
func (c *Conn) Lanes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lanes {
		if !l.dead {
			n++
		}
	}
	return n
}

// Write queues p, blocking while Window bytes are in flight beyond what the
// peer has consumed.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for c.err == nil && !c.writeShut && !c.finQueued && c.sendNext-c.peerRead >= uint64(c.cfg.Window) {
			c.cond.Wait()
		}
		switch {
		case c.err != nil:
			return n, c.err
		case c.writeShut || c.finQueued:
			return n, fmt.Errorf("stripe: write after close: %w", os.ErrClosed)
		}
		k := min(len(p), ChunkSize, c.cfg.Window-int(c.sendNext-c.peerRead))
		buf := make([]byte, k)
		copy(buf, p[:k])
		c.unsent = append(c.unsent, &chunk{off: c.sendNext, data: buf})
		c.sendNext += uint64(k)
		c.countLocked(k)
		p = p[k:]
		n += k
		c.cond.Broadcast()
	}
	return n, nil
}

// Close ends the sending direction (a FIN once every byte is through);
// reading goes on.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.finQueued && c.err == nil && !c.writeShut {
		c.finQueued = true
		c.finOff = c.sendNext
		c.unsent = append(c.unsent, &chunk{off: c.sendNext, fin: true})
		c.cond.Broadcast()
	}
	return nil
}

// Read returns the flow's bytes in order; io.EOF after the peer's FIN.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if len(c.ready) > 0 {
			n := 0
			for n < len(p) && len(c.ready) > 0 {
				k := copy(p[n:], c.ready[0][c.headPos:])
				n += k
				c.headPos += k
				if c.headPos == len(c.ready[0]) {
					c.ready[0] = nil
					c.ready = c.ready[1:]
					c.headPos = 0
				}
			}
			c.readPos += uint64(n)
			if c.readPos-c.ackRead >= uint64(c.cfg.Window/4) || len(c.ready) == 0 {
				c.requestAckLocked()
			}
			return n, nil
		}
		switch {
		case c.readShut:
			return 0, fmt.Errorf("stripe: read after cancel: %w", os.ErrClosed)
		case c.peerFinOK && c.readPos == c.peerFin:
			return 0, io.EOF
		case c.err != nil:
			return 0, c.err
		case c.allClosed:
			return 0, fmt.Errorf("stripe: every lane closed before the FIN: %w", io.ErrUnexpectedEOF)
		case !c.deadline.IsZero() && !c.cfg.Now().Before(c.deadline):
			return 0, os.ErrDeadlineExceeded
		}
		c.cond.Wait()
	}
}

// SetReadDeadline makes Read fail with os.ErrDeadlineExceeded from t on
// (zero: never).
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	if c.dlTimer != nil {
		c.dlTimer.Stop()
		c.dlTimer = nil
	}
	if !t.IsZero() {
		c.dlTimer = time.AfterFunc(t.Sub(c.cfg.Now()), func() {
			c.mu.Lock()
			c.cond.Broadcast()
			c.mu.Unlock()
		})
	}
	c.cond.Broadcast()
	return nil
}

// CancelRead and CancelWrite reset the flow: every lane is reset both ways
// with code, and the peer sees a reset.
func (c *Conn) CancelRead(code quic.StreamErrorCode) { c.reset(code, true) }

// CancelWrite resets the flow, like CancelRead.
func (c *Conn) CancelWrite(code quic.StreamErrorCode) { c.reset(code, false) }

func (c *Conn) reset(code quic.StreamErrorCode, read bool) {
	c.mu.Lock()
	if read {
		c.readShut = true
	} else {
		c.writeShut = true
	}
	first := c.err == nil
	if first {
		c.err = ErrReset
	}
	lanes := c.lanes
	c.cond.Broadcast()
	c.mu.Unlock()
	if first {
		for _, l := range lanes {
			l.l.CancelRead(code)
			l.l.CancelWrite(code)
		}
	}
}

func (c *Conn) countLocked(n int) {
	c.moved += int64(n)
	if !c.grown && c.cfg.Grow != nil && c.moved >= c.cfg.GrowAfter {
		c.grown = true
		go c.cfg.Grow(c)
	}
}

// finishedLocked reports whether the flow has nothing left to do: both
// directions ended and acknowledged, or the peer closed every lane.
func (c *Conn) finishedLocked() bool {
	if c.err != nil || c.allClosed {
		return true
	}
	sentAll := (c.finQueued && c.peerRecv > c.finOff) || c.writeShut
	gotAll := (c.peerFinOK && c.recvNext == c.peerFin && c.ackRecv > c.peerFin) || c.readShut
	return sentAll && gotAll
}

// laneDeadLocked takes a lane out and queues its unacknowledged chunks
// for the others.
func (c *Conn) laneDeadLocked(l *lane) {
	if l.dead {
		return
	}
	l.dead = true
	c.requeueLocked(l)
	alive := false
	for _, o := range c.lanes {
		alive = alive || !o.dead
	}
	if !alive && !c.finishedLocked() && c.err == nil {
		c.err = ErrLanes
	}
	c.cond.Broadcast()
}

// requeueLocked moves every in-flight chunk last sent on l to retx.
func (c *Conn) requeueLocked(l *lane) {
	kept := c.inflight[:0]
	for _, ch := range c.inflight {
		if ch.lane == l && !ch.ackedBy(c.peerRecv) {
			c.retx = insertByOffset(c.retx, ch)
		} else if ch.lane != l {
			kept = append(kept, ch)
		}
	}
	clear(c.inflight[len(kept):])
	c.inflight = kept
}

func insertByOffset(q []*chunk, ch *chunk) []*chunk {
	i := len(q)
	for i > 0 && q[i-1].off > ch.off {
		i--
	}
	q = append(q, nil)
	copy(q[i+1:], q[i:])
	q[i] = ch
	return q
}

// usableLocked reports whether l may take new chunks. A stalled lane is
// used again only when no other lane is usable.
func (c *Conn) usableLocked(l *lane) bool {
	if l.dead {
		return false
	}
	if !l.stalled {
		return true
	}
	for _, o := range c.lanes {
		if !o.dead && !o.stalled {
			return false
		}
	}
	return true
}

// nextLocked picks what lane l sends next: an acknowledgement, a chunk to
// resend, or a new chunk. ok is false when there is nothing.
func (c *Conn) nextLocked(l *lane) (frame []byte, ch *chunk, ok bool) {
	if l.ackSeq < c.ackSeq && c.usableLocked(l) {
		// Every lane sends every acknowledgement: they are small, and one
		// lost on a dead or black-holed path must not stall the sender.
		l.ackSeq = c.ackSeq
		b := make([]byte, 17)
		b[0] = frameAck
		binary.BigEndian.PutUint64(b[1:], c.recvAckLocked())
		binary.BigEndian.PutUint64(b[9:], c.readPos)
		return b, nil, true
	}
	if !c.usableLocked(l) {
		return nil, nil, false
	}
	var q *[]*chunk
	switch {
	case len(c.retx) > 0:
		q = &c.retx
	case len(c.unsent) > 0:
		q = &c.unsent
	default:
		return nil, nil, false
	}
	ch = (*q)[0]
	(*q)[0] = nil
	*q = (*q)[1:]
	if ch.ackedBy(c.peerRecv) {
		return nil, nil, true // received meanwhile: nothing to send
	}
	ch.lane, ch.sent = l, c.cfg.Now()
	c.inflight = append(c.inflight, ch)
	if ch.fin {
		b := make([]byte, 9)
		b[0] = frameFin
		binary.BigEndian.PutUint64(b[1:], ch.off)
		return b, ch, true
	}
	return AppendData(make([]byte, 0, 11+len(ch.data)), ch.off, ch.data), ch, true
}

// AppendData appends DATA frames carrying p at offset off to b, in chunks
// of at most ChunkSize.
func AppendData(b []byte, off uint64, p []byte) []byte {
	for len(p) > 0 {
		k := min(len(p), ChunkSize)
		b = append(b, frameData)
		b = binary.BigEndian.AppendUint64(b, off)
		b = binary.BigEndian.AppendUint16(b, uint16(k))
		b = append(b, p[:k]...)
		p, off = p[k:], off+uint64(k)
	}
	return b
}

// writer sends on one lane until the flow is finished or the lane dies.
func (c *Conn) writer(l *lane) {
	defer c.exit(l, false)
	c.mu.Lock()
	for {
		if c.err != nil || l.dead {
			c.mu.Unlock()
			return
		}
		frame, _, ok := c.nextLocked(l)
		if !ok {
			if c.finishedLocked() {
				c.mu.Unlock()
				_ = l.l.Close() // FIN on the lane: this side is done
				return
			}
			c.cond.Wait()
			continue
		}
		if frame == nil {
			continue
		}
		c.mu.Unlock()
		_, err := l.l.Write(frame)
		c.mu.Lock()
		if err != nil {
			c.laneErrLocked(l, err)
		}
	}
}

func (c *Conn) laneErrLocked(l *lane, err error) {
	if c.err == nil && c.cfg.IsReset(err) {
		// Wrapped, so that the lane's error (the peer's reset code: an
		// endpoint reset, a removed endpoint) still tells why.
		c.err = fmt.Errorf("%w: %w", ErrReset, err)
		c.cond.Broadcast()
		return
	}
	c.laneDeadLocked(l)
}

// reader takes frames from one lane until it ends.
func (c *Conn) reader(l *lane) {
	defer c.exit(l, true)
	var hdr [17]byte
	for {
		if _, err := io.ReadFull(l.l, hdr[:1]); err != nil {
			c.readEnd(l, err)
			return
		}
		c.mu.Lock()
		if l.stalled {
			l.stalled = false // the path carries frames again
			c.cond.Broadcast()
		}
		c.mu.Unlock()
		var err error
		switch hdr[0] {
		case frameData:
			if _, err = io.ReadFull(l.l, hdr[1:11]); err == nil {
				off := binary.BigEndian.Uint64(hdr[1:])
				n := int(binary.BigEndian.Uint16(hdr[9:]))
				buf := make([]byte, n)
				if _, err = io.ReadFull(l.l, buf); err == nil {
					err = c.gotData(off, buf)
				}
			}
		case frameAck:
			if _, err = io.ReadFull(l.l, hdr[1:17]); err == nil {
				err = c.gotAck(binary.BigEndian.Uint64(hdr[1:]), binary.BigEndian.Uint64(hdr[9:]))
			}
		case frameFin:
			if _, err = io.ReadFull(l.l, hdr[1:9]); err == nil {
				err = c.gotFin(binary.BigEndian.Uint64(hdr[1:]))
			}
		default:
			err = &protocolError{fmt.Sprintf("unknown frame type %d", hdr[0])}
		}
		if err != nil {
			c.readEnd(l, err)
			return
		}
	}
}

// readEnd handles the end of a lane's reading side: a clean end (the
// peer finished the lane) or an error (the lane's path died, or a reset).
func (c *Conn) readEnd(l *lane, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l.rdone = true
	if errors.Is(err, io.EOF) {
		all := true
		for _, o := range c.lanes {
			all = all && o.rdone
		}
		if all {
			c.allClosed = true
			c.cond.Broadcast()
		}
		return
	}
	var protoErr *protocolError
	if errors.As(err, &protoErr) && c.err == nil {
		c.err = err
		c.cond.Broadcast()
		return
	}
	c.laneErrLocked(l, err)
}

type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "stripe: " + e.msg }

// recvAckLocked is the received offset to acknowledge: the FIN counts as
// one byte at its offset.
func (c *Conn) recvAckLocked() uint64 {
	if c.peerFinOK && c.recvNext == c.peerFin {
		return c.recvNext + 1
	}
	return c.recvNext
}

// requestAckLocked asks every lane to send an acknowledgement of where
// the flow stands now.
func (c *Conn) requestAckLocked() {
	c.ackSeq++
	c.ackRecv, c.ackRead = c.recvAckLocked(), c.readPos
	c.cond.Broadcast()
}

func (c *Conn) gotData(off uint64, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := off + uint64(len(b))
	if end < off || end > c.readPos+uint64(c.cfg.Window) {
		return &protocolError{fmt.Sprintf("data up to offset %d beyond the window (consumed %d, window %d)", end, c.readPos, c.cfg.Window)}
	}
	if c.peerFinOK && end > c.peerFin {
		return &protocolError{fmt.Sprintf("data up to offset %d after FIN at %d", end, c.peerFin)}
	}
	if end <= c.recvNext || len(b) == 0 {
		// A duplicate: the sender resent it, so it may have missed our
		// acknowledgement. Say it again.
		c.requestAckLocked()
		return nil
	}
	if off < c.recvNext {
		b = b[c.recvNext-off:]
		off = c.recvNext
	}
	if _, dup := c.ooo[off]; !dup {
		c.ooo[off] = b
	}
	before := c.recvNext
	for {
		next, ok := c.ooo[c.recvNext]
		if !ok {
			break
		}
		delete(c.ooo, c.recvNext)
		c.ready = append(c.ready, next)
		c.recvNext += uint64(len(next))
	}
	if c.recvNext > before {
		c.countLocked(int(c.recvNext - before))
		if c.recvNext >= c.ackRecv+64<<10 || len(c.ooo) == 0 {
			c.requestAckLocked()
		}
		c.cond.Broadcast()
	}
	return nil
}

func (c *Conn) gotAck(recv, read uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The FIN counts as one byte: recv may be one beyond what was written.
	if sent := c.sendNext + b2u(c.finQueued); recv > sent || read > c.sendNext || read > recv {
		return &protocolError{fmt.Sprintf("acknowledgement of %d received and %d consumed, but %d sent", recv, read, c.sendNext)}
	}
	if recv > c.peerRecv {
		c.peerRecv = recv
		kept := c.inflight[:0]
		for _, ch := range c.inflight {
			if !ch.ackedBy(recv) {
				kept = append(kept, ch)
			}
		}
		clear(c.inflight[len(kept):])
		c.inflight = kept
	}
	c.peerRead = max(c.peerRead, read)
	c.cond.Broadcast()
	return nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func (c *Conn) gotFin(off uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peerFinOK && off != c.peerFin {
		return &protocolError{fmt.Sprintf("second FIN at %d after %d", off, c.peerFin)}
	}
	if off < c.recvNext {
		return &protocolError{fmt.Sprintf("FIN at %d below data received up to %d", off, c.recvNext)}
	}
	if off > c.readPos+uint64(c.cfg.Window) {
		return &protocolError{fmt.Sprintf("FIN at %d beyond the window (consumed %d, window %d)", off, c.readPos, c.cfg.Window)}
	}
	for o, b := range c.ooo {
		if o+uint64(len(b)) > off {
			return &protocolError{fmt.Sprintf("FIN at %d below data received up to %d", off, o+uint64(len(b)))}
		}
	}
	c.peerFin, c.peerFinOK = off, true
	c.requestAckLocked()
	return nil
}

// monitor resends the chunks of stalled lanes until the flow ends.
func (c *Conn) monitor() {
	defer c.exit(nil, false)
	tick := time.NewTicker(min(c.cfg.StallAfter/4, 250*time.Millisecond))
	defer tick.Stop()
	idle := c.idle
	for {
		c.mu.Lock()
		if c.err != nil || c.finishedLocked() {
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		now := c.cfg.Now()
		var stalled []*lane
		for _, ch := range c.inflight {
			if ch.lane == nil || ch.lane.dead || now.Sub(ch.sent) <= c.cfg.StallAfter || ch.ackedBy(c.peerRecv) || slices.Contains(stalled, ch.lane) {
				continue
			}
			// A chunk waits no longer than StallAfter on any lane, even one
			// already marked stalled: such a lane takes chunks while every
			// lane is stalled, and they are resent after StallAfter, on the
			// first lane that carries frames again.
			ch.lane.stalled = true
			stalled = append(stalled, ch.lane)
		}
		for _, l := range stalled {
			c.requeueLocked(l)
		}
		if len(stalled) > 0 {
			c.cond.Broadcast()
		}
		c.mu.Unlock()
		select {
		case <-tick.C:
		case <-idle:
			idle = nil // looked at once: the flow ends now, or ticks on
		}
	}
}

// exit records the end of one of the flow's goroutines; the last one
// calls Done.
func (c *Conn) exit(l *lane, reader bool) {
	c.mu.Lock()
	if l != nil {
		if reader {
			l.rdone = true
		} else {
			l.wdone = true
			if c.err != nil || l.dead {
				l.l.CancelWrite(c.cfg.ResetCode)
			}
		}
		if l.rdone && l.wdone && (c.err != nil || l.dead) {
			l.l.CancelRead(c.cfg.ResetCode)
		}
	}
	c.live--
	if l != nil && c.live == 1 && !c.idleDone {
		c.idleDone = true // only the monitor is left
		close(c.idle)
	}
	last := c.live == 0 && !c.done
	if last {
		c.done = true
		if c.dlTimer != nil {
			c.dlTimer.Stop()
		}
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	if last && c.cfg.Done != nil {
		c.cfg.Done()
	}
}
