package wire

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
	"github.com/stretchr/testify/require"
)

func TestControlRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteMsg(&buf, MsgHello, Hello{Node: "edge-1", Version: "v1", Proto: 1}))
	require.NoError(t, WriteMsg(&buf, 200, map[string]int{"future": 1}))
	require.NoError(t, WriteMsg(&buf, MsgHealth, Health{Full: true, Endpoints: []EndpointHealth{{ID: "a", Healthy: true}}}))
	require.NoError(t, WriteMsg(&buf, MsgLoad, Load{ActiveFlows: 42}))
	r := bufio.NewReader(&buf)

	typ, body, err := ReadMsg(r)
	require.NoError(t, err)
	require.Equal(t, MsgHello, typ)
	var h Hello
	require.NoError(t, json.Unmarshal(body, &h))
	require.Equal(t, Hello{Node: "edge-1", Version: "v1", Proto: 1}, h)

	typ, _, err = ReadMsg(r) // a reader skips what it does not know
	require.NoError(t, err)
	require.Equal(t, MsgType(200), typ)

	typ, body, err = ReadMsg(r)
	require.NoError(t, err)
	require.Equal(t, MsgHealth, typ)
	require.JSONEq(t, `{"full":true,"endpoints":[{"id":"a","healthy":true}]}`, string(body))

	typ, body, err = ReadMsg(r)
	require.NoError(t, err)
	require.Equal(t, MsgLoad, typ)
	require.JSONEq(t, `{"active_flows":42}`, string(body))

	_, _, err = ReadMsg(r)
	require.ErrorIs(t, err, io.EOF)
}

func TestControlRejects(t *testing.T) {
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"zero length": {[]byte{0}, ErrControlTooLong},
		"too long":    {quicvarint.Append(nil, MaxControlMsgLen+1), ErrControlTooLong},
		"truncated":   {[]byte{5, byte(MsgLoad), '{'}, io.ErrUnexpectedEOF},
		"no length":   {[]byte{0x40}, io.ErrUnexpectedEOF},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := ReadMsg(bufio.NewReader(bytes.NewReader(c.b)))
			require.True(t, errors.Is(err, c.want), "got %v", err)
		})
	}
	err := WriteMsg(io.Discard, MsgLoad, string(make([]byte, MaxControlMsgLen)))
	require.ErrorIs(t, err, ErrControlTooLong)
}

func FuzzReadMsg(f *testing.F) {
	var seed bytes.Buffer
	_ = WriteMsg(&seed, MsgHello, Hello{Node: "edge-1", Proto: 1})
	_ = WriteMsg(&seed, MsgLoad, Load{ActiveFlows: 3})
	f.Add(seed.Bytes())
	f.Add([]byte{0})
	f.Add([]byte{0x80, 0x10, 0, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		consumed := 0
		for {
			typ, body, err := ReadMsg(r)
			if err != nil {
				return
			}
			if len(body)+1 > MaxControlMsgLen {
				t.Fatalf("body of %d bytes passed the limit", len(body))
			}
			n := len(body) + 1
			consumed += quicvarint.Len(uint64(n)) + n
			if consumed > len(b) {
				t.Fatalf("read %d bytes from %d", consumed, len(b))
			}
			// What was read re-encodes to the same frame.
			var out bytes.Buffer
			_ = raw(&out, typ, body)
			t2, b2, err := ReadMsg(bufio.NewReader(&out))
			if err != nil || t2 != typ || !bytes.Equal(b2, body) {
				t.Fatalf("re-read: %v %d %q", err, t2, b2)
			}
		}
	})
}

// raw frames an already-encoded body.
func raw(w io.Writer, t MsgType, body []byte) error {
	b := quicvarint.Append(nil, uint64(len(body)+1))
	b = append(b, byte(t))
	_, err := w.Write(append(b, body...))
	return err
}
