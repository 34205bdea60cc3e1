//go:build linux

package wanem

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// OpenTUN creates the TUN device dev (layer 3, no packet information
// header) inside the named network namespace (as under /var/run/netns) and
// returns its non-blocking descriptor. The device lives as long as the
// descriptor: closing it, or the death of the process, removes it. The
// caller brings it up and addresses it.
func OpenTUN(nsName, dev string) (int, error) {
	target, err := netns.GetFromName(nsName)
	if err != nil {
		return -1, fmt.Errorf("wanem: namespace %s: %w", nsName, err)
	}
	defer target.Close()
	fd := -1
	var ferr error
	var wg sync.WaitGroup
	// A fresh goroutine whose thread is thrown away if it cannot return to
	// its namespace, so no other goroutine ever runs in the wrong one.
	wg.Go(func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ferr = fmt.Errorf("wanem: current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			ferr = fmt.Errorf("wanem: enter %s: %w", nsName, err)
			return
		}
		fd, ferr = openTUN(dev)
		if err := netns.Set(orig); err != nil {
			ferr = errors.Join(ferr, fmt.Errorf("wanem: leave %s: %w", nsName, err))
			return // the thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
	})
	wg.Wait()
	if ferr != nil && fd >= 0 {
		_ = unix.Close(fd)
		fd = -1
	}
	return fd, ferr
}

func openTUN(dev string) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("wanem: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("wanem: device name %q: %w", dev, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("wanem: create %s: %w", dev, err)
	}
	return fd, nil
}

// Link is an emulated link between two TUN devices: one Pipe each way.
type Link struct {
	// AB carries packets from device A to device B, BA the reverse.
	AB, BA *Pipe
	fdA    int
	fdB    int
	once   sync.Once
}

// NewLink starts both directions between the TUN descriptors a and b,
// which the Link owns from then on (Close closes them).
func NewLink(name string, a, b int, ab, ba Params, opts Options) (*Link, error) {
	l := &Link{fdA: a, fdB: b}
	var err error
	if l.AB, err = NewPipe(name+" a→b", a, b, ab, opts); err != nil {
		l.closeFDs()
		return nil, err
	}
	if l.BA, err = NewPipe(name+" b→a", b, a, ba, opts); err != nil {
		_ = l.AB.Close()
		l.closeFDs()
		return nil, err
	}
	return l, nil
}

// Close stops both directions and closes both devices. Idempotent.
func (l *Link) Close() error {
	var err error
	l.once.Do(func() {
		err = errors.Join(l.AB.Close(), l.BA.Close())
		l.closeFDs()
	})
	return err
}

func (l *Link) closeFDs() {
	_ = unix.Close(l.fdA)
	_ = unix.Close(l.fdB)
}

// Stats sums both directions' counters (MaxLate is the larger).
func (l *Link) Stats() Stats {
	a, b := l.AB.Stats(), l.BA.Stats()
	return Stats{
		In: a.In + b.In, Out: a.Out + b.Out, Lost: a.Lost + b.Lost, QueueFull: a.QueueFull + b.QueueFull,
		Overflow: a.Overflow + b.Overflow, WriteErrors: a.WriteErrors + b.WriteErrors,
		Late: a.Late + b.Late, MaxLate: max(a.MaxLate, b.MaxLate), SumLate: a.SumLate + b.SumLate,
	}
}
