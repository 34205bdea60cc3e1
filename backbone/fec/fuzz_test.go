package fec

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv4"
)

// noClose keeps a shared socket open when a Conn over it closes.
type noClose struct{ *net.UDPConn }

func (noClose) Close() error { return nil }

// feeder pushes datagrams "from" an enabled peer through a Conn's receive
// path, as if read from its socket.
type feeder struct {
	c    *Conn
	peer *net.UDPAddr
	ms   []ipv4.Message
}

func newFeeder(t testing.TB, u *net.UDPConn) *feeder {
	c := NewConn(noClose{u}, Config{})
	// The peer is the socket itself: the reports sent to it are never read.
	peer := u.LocalAddr().(*net.UDPAddr)
	require.True(t, c.Enable(peer))
	return &feeder{c: c, peer: peer, ms: messages()}
}

// feed reads the datagrams through the receive path and returns what
// quic-go would get.
func (f *feeder) feed(t testing.TB, ds [][]byte) [][]byte {
	kept := f.filter(ds)
	var out [][]byte
	for _, m := range f.ms[:kept] {
		require.LessOrEqual(t, m.N, len(m.Buffers[0]))
		b := m.Buffers[0][:m.N]
		require.False(t, IsFrame(b), "an FEC frame reached quic-go")
		out = append(out, b)
	}
	return out
}

// filter loads the datagrams into the read buffers and filters them;
// it returns how many are kept.
func (f *feeder) filter(ds [][]byte) int {
	r := &f.c.batchR
	_ = r.prepare(f.ms)
	n := min(len(ds), len(f.ms))
	for i, d := range ds[:n] {
		m := &f.ms[i]
		head := copy(m.Buffers[0], d)
		tail := copy(r.over[i], d[head:])
		m.N, m.NN, m.Flags, m.Addr = head+tail, 0, 0, f.peer
	}
	return f.c.filter(f.ms[:n], r)
}

// split cuts fuzz input into datagrams: a two-byte length, then as many
// bytes.
func split(data []byte) [][]byte {
	var ds [][]byte
	for len(data) >= 2 {
		n := int(binary.BigEndian.Uint16(data)) % (maxFrame + overflowLen + 16)
		data = data[2:]
		n = min(n, len(data))
		ds = append(ds, data[:n])
		data = data[n:]
	}
	return ds
}

func FuzzReceive(f *testing.F) {
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(f, err)
	defer u.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		fd := newFeeder(t, u)
		defer fd.c.Close()
		ds := split(data)
		for len(ds) > 0 {
			n := min(len(ds), 8)
			fd.feed(t, ds[:n])
			ds = ds[n:]
		}
		for _, p := range fd.c.peers {
			require.LessOrEqual(t, p.rn, MaxGroup+1)
			require.LessOrEqual(t, p.raccLen, MaxData)
		}
	})
}

// TestForgedFramesDeliverNothingAndAllocateNothing floods the receive path
// of an enabled peer with forged parity frames between real datagrams: a
// forged frame can make the receiver rebuild only what the check sum
// admits, and it never grows the receiver's state.
func TestForgedFramesDeliverNothingAndAllocateNothing(t *testing.T) {
	u := listen(t)
	defer u.Close()
	fd := newFeeder(t, u)
	defer fd.c.Close()
	forged := make([]byte, maxFrame)
	batch := func(i int) [][]byte {
		forged[0], forged[1] = typeParity, byte(1+i%MaxGroup)
		binary.BigEndian.PutUint16(forged[2:], uint16(i))
		for j := 4; j < len(forged); j++ {
			forged[j] = byte(i * j)
		}
		return [][]byte{datagram(i), datagram(i + 1), forged[:parityHeaderLen+10+i%(MaxData-10)]}
	}
	bogus := 0
	for i := range 5000 {
		for _, b := range fd.feed(t, batch(i)) {
			if len(b) < 5 || !equalDatagram(b) {
				bogus++
			}
		}
	}
	require.LessOrEqual(t, bogus, 1, "forged rebuilds past the check sum (about 1 in 65,536 can be)")
	require.Len(t, fd.c.peers, 1)
	b := batch(7)
	allocs := testing.AllocsPerRun(200, func() { fd.filter(b) })
	require.Zero(t, allocs)
}

func equalDatagram(b []byte) bool {
	d := datagram(int(binary.BigEndian.Uint32(b[1:])))
	return string(d) == string(b)
}
