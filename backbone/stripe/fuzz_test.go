package stripe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/quic-go/quic-go"
)

// inputLane is a lane whose peer sent exactly its bytes and then closed
// it; what the flow writes on it vanishes.
type inputLane struct{ r *bytes.Reader }

func (l *inputLane) Read(b []byte) (int, error)       { return l.r.Read(b) }
func (l *inputLane) Write(b []byte) (int, error)      { return len(b), nil }
func (l *inputLane) Close() error                     { return nil }
func (l *inputLane) CancelRead(quic.StreamErrorCode)  {}
func (l *inputLane) CancelWrite(quic.StreamErrorCode) {}

func frame(kind byte, fields ...uint64) []byte {
	b := []byte{kind}
	for _, f := range fields {
		b = binary.BigEndian.AppendUint64(b, f)
	}
	return b
}

// FuzzLaneFrames feeds a lane any bytes a peer could send: the flow never
// panics, ends once the lane has ended (with a protocol error, or the
// lane's end within or between frames), reads no more than the input carried, and never takes an
// acknowledgement of more than it sent.
func FuzzLaneFrames(f *testing.F) {
	f.Add(AppendData(nil, 0, []byte("hello")))
	f.Add(append(AppendData(nil, 0, []byte("hello")), frame(frameFin, 5)...))
	f.Add(append(AppendData(nil, 5, []byte("world")), AppendData(nil, 0, []byte("hello"))...))
	f.Add(frame(frameAck, 3, 3))
	f.Add(frame(frameAck, 1<<40, 0))
	f.Add(AppendData(nil, ^uint64(0)-2, []byte("wrap")))
	f.Add(frame(frameFin, 0))
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		done := make(chan struct{})
		c := New(&inputLane{r: bytes.NewReader(in)}, Config{Window: 1 << 20, Done: func() { close(done) }})
		// Ten bytes to acknowledge; the input may have ended the flow
		// already, and then Write fails like Read.
		_, _ = c.Write([]byte("0123456789"))
		got, err := io.ReadAll(c)
		if len(got) > len(in) {
			t.Fatalf("read %d bytes from an input of %d", len(got), len(in))
		}
		var pe *protocolError
		if err != nil && !errors.As(err, &pe) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrLanes) {
			t.Fatalf("the flow ended with %v: neither a protocol error nor the lane's end", err)
		}
		c.mu.Lock()
		if c.peerRecv > c.sendNext+1 || c.peerRead > c.sendNext {
			t.Errorf("acknowledged up to %d (consumed %d) of %d bytes sent", c.peerRecv, c.peerRead, c.sendNext)
		}
		c.mu.Unlock()
		c.CancelWrite(0)
		<-done
	})
}
