//go:build linux

package wanem

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Stats counts what one direction did with its packets.
type Stats struct {
	// In is every packet read; Out every packet written.
	In, Out uint64
	// Lost were dropped by the loss models, QueueFull at the tail of a full
	// rate-limiter queue, Overflow because the emulator held MaxInFlight
	// packets already, WriteErrors by the output device.
	Lost, QueueFull, Overflow, WriteErrors uint64
	// Late counts packets written more than LateThreshold after their due
	// time; MaxLate is the worst lateness seen, SumLate the total (mean =
	// SumLate / Out).
	Late             uint64
	MaxLate, SumLate time.Duration
}

// Sub returns s − o, field by field (MaxLate is s's).
func (s Stats) Sub(o Stats) Stats {
	return Stats{
		In: s.In - o.In, Out: s.Out - o.Out, Lost: s.Lost - o.Lost, QueueFull: s.QueueFull - o.QueueFull,
		Overflow: s.Overflow - o.Overflow, WriteErrors: s.WriteErrors - o.WriteErrors,
		Late: s.Late - o.Late, MaxLate: s.MaxLate, SumLate: s.SumLate - o.SumLate,
	}
}

// MaxInFlight bounds the packets one direction holds (in its delay line and
// its queue together): 1 Gbit/s × 400 ms of 1500-byte packets fits.
const MaxInFlight = 1 << 16

// bufSize is the buffer of one packet: the largest TUN MTU the lab uses
// plus room.
const bufSize = 2048

// Options are how a Pipe runs, as opposed to what it emulates.
type Options struct {
	// Realtime asks for SCHED_FIFO on the loop's thread (root only; refused
	// silently otherwise), so that a busy machine delays the emulator as
	// little as possible.
	Realtime bool
}

// Pipe is one direction of an emulated link: it reads packets from one
// file descriptor and writes them, shaped, to another. Both descriptors
// must be non-blocking packet devices (TUN); the Pipe does not own them.
type Pipe struct {
	name     string
	src, dst int
	wake     int // eventfd: parameter changes and stop
	opts     Options
	params   atomic.Pointer[Params]
	changed  atomic.Bool
	stop     atomic.Bool
	done     chan struct{}
	err      error // set before done is closed
	ctr      counters
	stopOnce sync.Once
}

// NewPipe starts the loop that moves packets from src to dst shaped by p.
func NewPipe(name string, src, dst int, p Params, opts Options) (*Pipe, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("%s: eventfd: %w", name, err)
	}
	pp := &Pipe{name: name, src: src, dst: dst, wake: wake, opts: opts, done: make(chan struct{})}
	reserveP()
	pp.params.Store(&p)
	go pp.run()
	return pp, nil
}

// Set changes the shaping from now on; packets already accepted keep their
// release times (a shorter delay does not overtake them).
func (pp *Pipe) Set(p Params) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%s: %w", pp.name, err)
	}
	pp.params.Store(&p)
	pp.changed.Store(true)
	pp.kick()
	return nil
}

// Params returns the parameters in force.
func (pp *Pipe) Params() Params { return *pp.params.Load() }

// counters are the live Stats, written by the loop only.
type counters struct {
	in, out, lost, queueFull, overflow, writeErrors, late atomic.Uint64
	maxLate, sumLate                                      atomic.Int64
}

// Stats returns a snapshot of the counters.
func (pp *Pipe) Stats() Stats {
	c := &pp.ctr
	return Stats{
		In: c.in.Load(), Out: c.out.Load(), Lost: c.lost.Load(), QueueFull: c.queueFull.Load(),
		Overflow: c.overflow.Load(), WriteErrors: c.writeErrors.Load(), Late: c.late.Load(),
		MaxLate: time.Duration(c.maxLate.Load()), SumLate: time.Duration(c.sumLate.Load()),
	}
}

// Close stops the loop and waits for it; packets still held are dropped.
// It does not close src or dst. Idempotent; returns the loop's error.
func (pp *Pipe) Close() error {
	pp.stopOnce.Do(func() {
		pp.stop.Store(true)
		pp.kick()
	})
	<-pp.done
	return pp.err
}

func (pp *Pipe) kick() {
	one := [8]byte{1}
	_, _ = unix.Write(pp.wake, one[:])
}

type packet struct {
	buf    *[bufSize]byte
	n      int
	sendAt int64
}

// run is the scheduling loop. It owns its OS thread so that it can raise
// its priority and sleep with nanosecond timeouts.
func (pp *Pipe) run() {
	runtime.LockOSThread()
	defer func() {
		running.Add(-1)
		_ = unix.Close(pp.wake)
		close(pp.done)
		// The thread may have changed scheduling class: it is not unlocked,
		// so it dies with this goroutine.
	}()
	if pp.opts.Realtime {
		_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: loopPriority, Flags: unix.SCHED_FLAG_RESET_ON_FORK}, 0)
	}
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)

	base := time.Now()
	now := func() int64 { return int64(time.Since(base)) }
	sh := newShaper(*pp.params.Load())
	st := &pp.ctr
	var free []*[bufSize]byte
	// The queue is a ring of packets ordered by sendAt.
	ring := make([]packet, 1024)
	head, count := 0, 0
	fds := []unix.PollFd{{Fd: int32(pp.src), Events: unix.POLLIN}, {Fd: int32(pp.wake), Events: unix.POLLIN}}
	var ts unix.Timespec
	var drain [8]byte
	for !pp.stop.Load() {
		wait := int64(maxSleep)
		if count > 0 {
			wait = min(max(ring[head].sendAt-now(), 0), wait)
		}
		ts = unix.NsecToTimespec(wait)
		timeout := &ts
		if err := ppoll(fds, timeout); err != nil && !errors.Is(err, unix.EINTR) {
			pp.err = fmt.Errorf("%s: ppoll: %w", pp.name, err)
			return
		}
		if fds[1].Revents != 0 {
			_, _ = unix.Read(pp.wake, drain[:])
			if pp.changed.Swap(false) {
				sh.set(*pp.params.Load())
			}
		}
		// Take every packet waiting, up to a batch, so that sending keeps up.
		for range 64 {
			var b *[bufSize]byte
			if n := len(free); n > 0 {
				b, free = free[n-1], free[:n-1]
			} else {
				b = new([bufSize]byte)
			}
			n, err := rawRead(pp.src, b[:])
			if err != nil || n <= 0 {
				free = append(free, b)
				if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
					pp.err = fmt.Errorf("%s: read: %w", pp.name, err)
					return
				}
				break
			}
			st.in.Add(1)
			sendAt, v := sh.admit(now(), n)
			switch {
			case v == dropLoss:
				st.lost.Add(1)
			case v == dropQueue:
				st.queueFull.Add(1)
			case count >= MaxInFlight:
				st.overflow.Add(1)
			default:
				if count == len(ring) {
					ring = grow(ring, head, count)
					head = 0
				}
				ring[(head+count)%len(ring)] = packet{buf: b, n: n, sendAt: sendAt}
				count++
				continue
			}
			free = append(free, b)
		}
		// Send everything due.
		for count > 0 {
			p := &ring[head]
			t := now()
			if p.sendAt > t {
				break
			}
			if err := rawWrite(pp.dst, p.buf[:p.n]); err != nil {
				st.writeErrors.Add(1)
			} else {
				st.out.Add(1)
			}
			late := t - p.sendAt
			st.sumLate.Add(late)
			if late > st.maxLate.Load() {
				st.maxLate.Store(late)
			}
			if late > int64(LateThreshold) {
				st.late.Add(1)
			}
			free = append(free, p.buf)
			*p = packet{}
			head = (head + 1) % len(ring)
			count--
		}
	}
}

// grow doubles a full ring, unrolling it to start at index 0.
func grow(ring []packet, head, count int) []packet {
	next := make([]packet, 2*len(ring))
	for i := range count {
		next[i] = ring[(head+i)%len(ring)]
	}
	return next
}

// running counts the loops of the process; each holds a P (see ppoll).
var running atomic.Int32

// reserveP raises GOMAXPROCS so that every loop can hold a P and two are
// left for the rest of the process. It never lowers it.
func reserveP() {
	n := int(running.Add(1)) + 2
	if runtime.GOMAXPROCS(0) < n {
		runtime.GOMAXPROCS(n)
	}
}

// maxSleep bounds one sleep of the loop, so that the runtime can stop it
// for a garbage collection within that time (see ppoll).
const maxSleep = 5 * time.Millisecond

// ppoll sleeps in ppoll(2) without telling the Go scheduler: the loop
// keeps its P and its thread, so that waking up never waits for the
// scheduler to hand it a P (on a busy machine that hand-off goes through
// threads of normal priority and can take milliseconds). The price is a
// P per loop: Pipe raises GOMAXPROCS accordingly.
func ppoll(fds []unix.PollFd, ts *unix.Timespec) error {
	_, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)),
		uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func rawRead(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawWrite(fd int, b []byte) error {
	_, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return e
	}
	return nil
}
