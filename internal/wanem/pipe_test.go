//go:build linux

package wanem

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// packetPair returns the two ends of a datagram socket pair standing in
// for a TUN device: what is written to one end is read from the other,
// one packet at a time.
func packetPair(t *testing.T) (inner, outer int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	for _, fd := range fds {
		// Room for every packet of a test, however late the reader runs.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	}
	t.Cleanup(func() {
		_ = unix.Close(fds[0])
		_ = unix.Close(fds[1])
	})
	return fds[0], fds[1]
}

// collect reads packets from fd in the background until stop is called,
// which returns their sequence numbers in arrival order.
func collect(fd int) (stop func() []uint32) {
	var got []uint32
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, bufSize)
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			_, _ = unix.Poll(fds, 10)
			for {
				n, err := unix.Read(fd, buf)
				if errors.Is(err, unix.EAGAIN) || n <= 0 {
					break
				}
				got = append(got, binary.BigEndian.Uint32(buf[:4]))
			}
			select {
			case <-quit:
				return
			default:
			}
		}
	}()
	return func() []uint32 {
		close(quit)
		<-done
		return got
	}
}

// writePacket writes one packet, waiting for room in the socket pair.
func writePacket(t *testing.T, fd int, pkt []byte) {
	t.Helper()
	for {
		_, err := unix.Write(fd, pkt)
		if !errors.Is(err, unix.EAGAIN) {
			require.NoError(t, err)
			return
		}
		_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 100)
	}
}

func TestPipeKeepsOrderAndCounts(t *testing.T) {
	srcIn, srcOut := packetPair(t)
	dstIn, dstOut := packetPair(t)
	p, err := NewPipe("test", srcOut, dstIn, Params{Delay: 5 * time.Millisecond, Loss: 0.1, Seed: 3}, Options{})
	require.NoError(t, err)
	defer p.Close()
	stop := collect(dstOut)
	const n = 500
	pkt := make([]byte, 200)
	for i := range n {
		binary.BigEndian.PutUint32(pkt, uint32(i))
		writePacket(t, srcIn, pkt)
	}
	// Every packet is read, then either lost or delivered.
	require.Eventually(t, func() bool { st := p.Stats(); return st.In == n && st.Out+st.Lost+st.WriteErrors == n }, 30*time.Second, time.Millisecond)
	st := p.Stats()
	require.NoError(t, p.Close())
	got := stop()
	require.Len(t, got, int(st.Out))
	for i := 1; i < len(got); i++ {
		require.Greater(t, got[i], got[i-1], "order")
	}
	require.InDelta(t, n/10, st.Lost, 25)
	require.Zero(t, st.QueueFull+st.Overflow+st.WriteErrors)
	require.NoError(t, p.Close(), "Close is idempotent")
}

func TestPipeSetTakesEffect(t *testing.T) {
	srcIn, srcOut := packetPair(t)
	dstIn, _ := packetPair(t)
	p, err := NewPipe("test", srcOut, dstIn, Params{}, Options{})
	require.NoError(t, err)
	defer p.Close()
	require.ErrorContains(t, p.Set(Params{Loss: 2}), "test: wanem: loss 2")
	require.NoError(t, p.Set(Params{Loss: 1}))
	require.Equal(t, 1.0, p.Params().Loss)
	// Set is applied before the next packet is read: the loop reads the
	// wake-up first.
	require.Eventually(t, func() bool {
		_, err := unix.Write(srcIn, make([]byte, 10))
		require.NoError(t, err)
		st := p.Stats()
		return st.Lost > 0 && st.Out == 0
	}, 5*time.Second, time.Millisecond)
}
