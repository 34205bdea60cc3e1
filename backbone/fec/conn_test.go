package fec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lossy is the sending socket of a test: it loses, holds back or passes
// each datagram written through it, as the test says. A GSO write is
// split into its datagrams first, so that one of them can be lost.
type lossy struct {
	*net.UDPConn
	mu   sync.Mutex
	data int // data datagrams written so far
	// drop says whether data datagram i is lost; dropFrame whether an FEC
	// frame is; hold whether data datagram i is held back until the next
	// FEC frame has been sent.
	drop      func(i int) bool
	dropFrame func(b []byte) bool
	hold      func(i int) bool
	held      [][]byte
}

func (l *lossy) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seg := segmentSize(oob)
	plain := appendWithoutGSO(nil, oob)
	for off := 0; off < len(b); {
		end := len(b)
		if seg > 0 {
			end = min(off+seg, len(b))
		}
		d := b[off:end]
		off = end
		if IsFrame(d) {
			if l.dropFrame != nil && l.dropFrame(d) {
				continue
			}
			if _, _, err := l.UDPConn.WriteMsgUDP(d, plain, addr); err != nil {
				return 0, 0, err
			}
			for _, h := range l.held {
				if _, _, err := l.UDPConn.WriteMsgUDP(h, plain, addr); err != nil {
					return 0, 0, err
				}
			}
			l.held = nil
			continue
		}
		i := l.data
		l.data++
		switch {
		case l.drop != nil && l.drop(i):
		case l.hold != nil && l.hold(i):
			l.held = append(l.held, bytes.Clone(d))
		default:
			if _, _, err := l.UDPConn.WriteMsgUDP(d, plain, addr); err != nil {
				return 0, 0, err
			}
		}
	}
	return len(b), len(oob), nil
}

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	return u
}

// pair is a sender whose datagrams go through a lossy socket and a plain
// receiver, each wrapped, both with FEC on towards the other.
type pair struct {
	tx, rx   *Conn
	loss     *lossy
	txa, rxa *net.UDPAddr
}

func newPair(t *testing.T, cfg Config, enable bool) *pair {
	t.Helper()
	txCfg := cfg
	if txCfg.FlushDelay == 0 {
		// The sender's groups end when they fill, never on the clock: a
		// test that places its losses in groups must not see a busy
		// machine's pause between two writes close a group early.
		txCfg.FlushDelay = time.Hour
	}
	ua, ub := listen(t), listen(t)
	l := &lossy{UDPConn: ua}
	p := &pair{tx: NewConn(l, txCfg), rx: NewConn(ub, cfg), loss: l,
		txa: ua.LocalAddr().(*net.UDPAddr), rxa: ub.LocalAddr().(*net.UDPAddr)}
	t.Cleanup(func() {
		require.NoError(t, p.tx.Close())
		require.NoError(t, p.rx.Close())
	})
	if enable {
		require.True(t, p.tx.Enable(p.rxa))
		require.True(t, p.rx.Enable(p.txa))
	}
	return p
}

// datagram i of a test: QUIC-like (fixed bit set), of varying length,
// with i in bytes 1–4.
func datagram(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	b := make([]byte, 40+(i*97)%(MaxData-40))
	for j := range b {
		b[j] = byte(r.Uint32())
	}
	b[0] = 0x40 | b[0]&0x3f
	binary.BigEndian.PutUint32(b[1:], uint32(i))
	return b
}

func (p *pair) send(t *testing.T, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		_, _, err := p.tx.WriteMsgUDP(datagram(i), nil, p.rxa)
		require.NoError(t, err)
	}
}

// messages are read buffers as quic-go gives them.
func messages() []ipv4.Message {
	ms := make([]ipv4.Message, 8)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, MaxData)}
		ms[i].OOB = make([]byte, 128)
	}
	return ms
}

// receive reads through c until it has read datagram `until` (the last one
// sent, which no test loses), and returns every datagram read, by index;
// a datagram no test sent fails the test.
func receive(t *testing.T, c *Conn, until int) map[int]int {
	t.Helper()
	got := map[int]int{}
	ms := messages()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	for {
		n, err := c.ReadBatch(ms, 0)
		require.NoError(t, err, "read until datagram %d", until)
		for _, m := range ms[:n] {
			b := m.Buffers[0][:m.N]
			require.GreaterOrEqual(t, len(b), 5)
			i := int(binary.BigEndian.Uint32(b[1:]))
			require.Equal(t, datagram(i), b, "datagram %d arrived changed", i)
			got[i]++
			if i == until {
				return got
			}
		}
	}
}

func TestPlainDatagramsPassThroughUntouched(t *testing.T) {
	p := newPair(t, Config{}, false)
	// An FEC frame from a peer that was not enabled is dropped unread.
	_, err := p.loss.UDPConn.WriteToUDP([]byte{typeParity, 1, 0, 0, 0, 0, 0, 0, 1, 2}, p.rxa)
	require.NoError(t, err)
	p.send(t, 0, 50)
	got := receive(t, p.rx, 49)
	require.Len(t, got, 50)
	require.Equal(t, uint64(1), p.rx.Stats().Dropped)
	require.Zero(t, p.tx.Stats().ParitySent, "no parity towards a peer that was not enabled")
}

func TestOneLossPerGroupIsRebuilt(t *testing.T) {
	p := newPair(t, Config{}, true)
	p.loss.drop = func(i int) bool { return i%8 == 3 && i < 64 }
	p.send(t, 0, 65)
	got := receive(t, p.rx, 64)
	for i := range 65 {
		require.Equal(t, 1, got[i], "datagram %d", i)
	}
	st := p.rx.Stats()
	require.Equal(t, uint64(8), st.Lost)
	require.Equal(t, uint64(8), st.Recovered)
	require.Zero(t, st.Unrecovered)
	require.Zero(t, st.Mismatched)
}

func TestTwoLossesInAGroupPassAsLoss(t *testing.T) {
	p := newPair(t, Config{}, true)
	p.loss.drop = func(i int) bool { return i == 10 || i == 13 }
	p.send(t, 0, 25)
	got := receive(t, p.rx, 24)
	for i := range 25 {
		want := 1
		if i == 10 || i == 13 {
			want = 0
		}
		require.Equal(t, want, got[i], "datagram %d", i)
	}
	st := p.rx.Stats()
	require.Equal(t, uint64(2), st.Unrecovered)
	require.Zero(t, st.Recovered)
}

func TestALostParityLosesOnlyItsGroup(t *testing.T) {
	p := newPair(t, Config{}, true)
	parities := 0
	p.loss.dropFrame = func(b []byte) bool {
		if b[0] != typeParity {
			return false
		}
		parities++
		return parities == 2 // the parity of datagrams 8–15
	}
	p.loss.drop = func(i int) bool { return i == 9 || i == 20 || i == 28 }
	p.send(t, 0, 33)
	got := receive(t, p.rx, 32)
	require.Zero(t, got[9], "its parity was lost")
	require.Zero(t, got[20], "the group after a lost parity cannot be told apart")
	require.Equal(t, 1, got[28], "the next group is rebuilt again")
}

func TestReorderingAcrossAParityDeliversNothingBogus(t *testing.T) {
	p := newPair(t, Config{}, true)
	// Datagram 7 (the last of the first group) arrives after the group's
	// parity: the receiver rebuilds it, then the original arrives too
	// (QUIC drops the duplicate), and the next group, one too many, does
	// not add up. The group after it is rebuilt again.
	p.loss.hold = func(i int) bool { return i == 7 }
	p.loss.drop = func(i int) bool { return i == 20 }
	p.send(t, 0, 25)
	got := receive(t, p.rx, 24)
	require.Equal(t, 2, got[7])
	require.Equal(t, 1, got[20])
	st := p.rx.Stats()
	require.Equal(t, uint64(2), st.Recovered)
	require.Equal(t, uint64(1), st.Mismatched)
}

func TestTheFlushDelayProtectsATail(t *testing.T) {
	p := newPair(t, Config{FlushDelay: DefaultFlushDelay}, true)
	p.loss.drop = func(i int) bool { return i == 1 }
	p.send(t, 0, 3)
	// Three datagrams do not fill a group: the timer sends their parity.
	got := map[int]int{}
	ms := messages()
	require.NoError(t, p.rx.SetReadDeadline(time.Now().Add(20*time.Second)))
	for len(got) < 3 {
		n, err := p.rx.ReadBatch(ms, 0)
		require.NoError(t, err)
		for _, m := range ms[:n] {
			got[int(binary.BigEndian.Uint32(m.Buffers[0][1:]))]++
		}
	}
	require.Equal(t, map[int]int{0: 1, 1: 1, 2: 1}, got)
	require.Eventually(t, func() bool { return p.tx.Stats().Protected == 3 }, 20*time.Second, time.Millisecond)
}

// gsoOOB is the control message of a GSO write of seg-byte datagrams.
func gsoOOB(seg int) []byte {
	b := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(seg))
	return b
}

// gsoBatch is n datagrams of seg bytes, from index from on, back to back.
func gsoBatch(from, n, seg int) []byte {
	var b []byte
	for i := from; i < from+n; i++ {
		d := make([]byte, seg)
		copy(d, datagram(i+1000))
		d[0] = 0x40
		binary.BigEndian.PutUint32(d[1:], uint32(i))
		b = append(b, d...)
	}
	return b
}

func TestAGSOWriteIsGroupedByDatagram(t *testing.T) {
	p := newPair(t, Config{}, true)
	p.loss.drop = func(i int) bool { return i == 4 }
	_, _, err := p.tx.WriteMsgUDP(gsoBatch(0, 8, 1000), gsoOOB(1000), p.rxa)
	require.NoError(t, err)
	ms := messages()
	require.NoError(t, p.rx.SetReadDeadline(time.Now().Add(20*time.Second)))
	got := map[int]int{}
	for len(got) < 8 {
		n, err := p.rx.ReadBatch(ms, 0)
		require.NoError(t, err)
		for _, m := range ms[:n] {
			require.Equal(t, 1000, m.N)
			got[int(binary.BigEndian.Uint32(m.Buffers[0][1:]))]++
		}
	}
	require.Equal(t, uint64(1), p.rx.Stats().Recovered)
}

func TestGSOThroughTheKernel(t *testing.T) {
	ua, ub := listen(t), listen(t)
	tx, rx := NewConn(ua, Config{}), NewConn(ub, Config{})
	defer func() { require.NoError(t, tx.Close()); require.NoError(t, rx.Close()) }()
	require.True(t, tx.Enable(ub.LocalAddr()))
	require.True(t, rx.Enable(ua.LocalAddr()))
	if _, _, err := tx.WriteMsgUDP(gsoBatch(0, 5, 1000), gsoOOB(1000), ub.LocalAddr().(*net.UDPAddr)); err != nil {
		if errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOPROTOOPT) {
			t.Skipf("the kernel has no UDP GSO here: %v", err)
		}
		require.NoError(t, err)
	}
	ms := messages()
	require.NoError(t, rx.SetReadDeadline(time.Now().Add(20*time.Second)))
	for got := 0; got < 5; {
		n, err := rx.ReadBatch(ms, 0)
		require.NoError(t, err)
		got += n
	}
	require.Eventually(t, func() bool { return tx.Stats().Protected == 5 }, 20*time.Second, time.Millisecond,
		"the five datagrams of one GSO write are one group")
}

func TestTheGroupFollowsTheReportedLoss(t *testing.T) {
	p := newPair(t, Config{}, true)
	// The sender reads its socket for the receiver's reports.
	done := make(chan struct{})
	go func() {
		defer close(done)
		ms := messages()
		for {
			if _, err := p.tx.ReadBatch(ms, 0); err != nil {
				return
			}
		}
	}()
	defer func() { _ = p.tx.SetReadDeadline(time.Now()); <-done }()
	go func() { _ = receiveAll(p.rx) }()

	last := 0
	sendUntil := func(k int) {
		deadline := time.Now().Add(20 * time.Second)
		for p.tx.Group(p.rxa) != k {
			require.True(t, time.Now().Before(deadline), "group stays %d, want %d", p.tx.Group(p.rxa), k)
			p.send(t, last, last+64)
			last += 64
		}
	}
	require.Equal(t, 8, p.tx.Group(p.rxa), "0.1 % assumed at first")
	sendUntil(MaxGroup) // no loss
	p.loss.mu.Lock()
	p.loss.drop = func(i int) bool { return i%20 == 0 } // 5 %
	p.loss.mu.Unlock()
	sendUntil(MinGroup)
	require.NotZero(t, p.tx.Stats().ReportsReceived)
}

// receiveAll reads until the socket closes.
func receiveAll(c *Conn) error {
	ms := messages()
	for {
		if _, err := c.ReadBatch(ms, 0); err != nil {
			return err
		}
	}
}

func TestPeersAreBoundedAndCounted(t *testing.T) {
	u := listen(t)
	c := NewConn(u, Config{MaxPeers: 2})
	defer func() { require.NoError(t, c.Close()) }()
	a := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1001}
	b := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1002}
	require.True(t, c.Enable(a))
	require.True(t, c.Enable(a), "a second connection from the same address")
	require.True(t, c.Enable(b))
	require.False(t, c.Enable(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1003}), "past MaxPeers")
	require.False(t, c.Enable(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}), "not a UDP address")
	c.Disable(a)
	require.True(t, c.Enabled(a), "one Enable of a is not undone yet")
	c.Disable(a)
	require.False(t, c.Enabled(a))
	require.Zero(t, c.Group(a))
	// IPv4 in IPv6 form is the same peer.
	require.True(t, c.Enabled(&net.UDPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 1002}))
	require.NoError(t, c.Close())
	require.False(t, c.Enable(a), "closed")
}

func TestAnAllowedPeerTurnsOnAtItsFirstParity(t *testing.T) {
	p := newPair(t, Config{}, false)
	require.True(t, p.rx.Allow(p.txa))
	require.False(t, p.rx.Enabled(p.txa), "allowed, not yet protected")
	// Before the sender turns FEC on, everything is plain both ways.
	_, err := p.rx.WriteTo(datagram(1000), p.txa)
	require.NoError(t, err)
	require.Zero(t, p.rx.Stats().ParitySent)
	require.True(t, p.tx.Enable(p.rxa))
	p.loss.drop = func(i int) bool { return i == 3 || i == 12 }
	p.send(t, 0, 25)
	got := receive(t, p.rx, 24)
	require.Zero(t, got[3], "the first group only turns FEC on")
	require.Equal(t, 1, got[12], "the second is protected")
	require.True(t, p.rx.Enabled(p.txa))
	st := p.rx.Stats()
	require.Equal(t, uint64(1), st.Lost, "the first group is not counted")
	require.Equal(t, uint64(1), st.Recovered)
	// And the receiver protects what it sends back now.
	_, err = p.rx.WriteTo(datagram(1001), p.txa)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.rx.Stats().ParitySent == 1 }, 20*time.Second, time.Millisecond)
}

func TestAnAllowedPeerIgnoresReportsBeforeItsFirstParity(t *testing.T) {
	u := listen(t)
	defer u.Close()
	fd := newFeeder(t, u)
	defer fd.c.Close()
	other := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	require.True(t, fd.c.Allow(other))
	fd.peer = other
	require.Empty(t, fd.feed(t, [][]byte{report{covered: 100, lost: 1}.append(nil)}))
	require.False(t, fd.c.Enabled(other))
	require.Equal(t, uint64(1), fd.c.Stats().Dropped)
}
