package wire

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/quic-go/quic-go/quicvarint"
)

// MsgType names a control message. A reader skips types it does not know,
// so a newer peer can add messages without breaking an older one.
type MsgType uint8

// Control message types.
const (
	// MsgHello is the edge's first message: who it is, what it speaks.
	MsgHello MsgType = 1
	// MsgHealth is a region's health view: a full snapshot or changes.
	MsgHealth MsgType = 2
	// MsgLoad is a region's load report.
	MsgLoad MsgType = 3
)

// MaxControlMsgLen bounds one control message body.
const MaxControlMsgLen = 1 << 20

// ErrControlTooLong is returned for a control message over MaxControlMsgLen.
var ErrControlTooLong = errors.New("control message too long")

// Hello is sent by the edge on a new control stream.
type Hello struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	// Proto is the highest control protocol version the edge speaks.
	Proto int `json:"proto"`
}

// EndpointHealth is the health of one endpoint as its region sees it.
type EndpointHealth struct {
	ID      string `json:"id"`
	Healthy bool   `json:"healthy"`
	Reason  string `json:"reason,omitempty"`
}

// Health carries a region's endpoint health. Full means the list is the
// whole view and replaces what the edge knew; otherwise it lists changes.
type Health struct {
	Full      bool             `json:"full,omitempty"`
	Endpoints []EndpointHealth `json:"endpoints"`
}

// Load is a region's load report.
type Load struct {
	ActiveFlows int64 `json:"active_flows"`
}

// WriteMsg writes one control message: varint(len) type(1) body(len-1),
// the body being the JSON encoding of v.
func WriteMsg(w io.Writer, t MsgType, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("control: encode %d: %w", t, err)
	}
	if len(body)+1 > MaxControlMsgLen {
		return ErrControlTooLong
	}
	b := quicvarint.Append(make([]byte, 0, len(body)+9), uint64(len(body)+1))
	b = append(b, byte(t))
	b = append(b, body...)
	_, err = w.Write(b)
	return err
}

// ReadMsg reads one control message and returns its type and raw body.
func ReadMsg(r *bufio.Reader) (MsgType, []byte, error) {
	// io.EOF only between messages; a length cut short is unexpected.
	if _, err := r.Peek(1); err != nil {
		return 0, nil, err
	}
	n, err := quicvarint.Read(r)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("control: length: %w", err)
	}
	if n == 0 || n > MaxControlMsgLen {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrControlTooLong, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("control: body: %w", err)
	}
	return MsgType(buf[0]), buf[1:], nil
}
