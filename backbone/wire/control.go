package wire

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

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
	// MsgEdgeState is an edge's readiness (EdgeState), sent after hello
	// and on every change by edges of control protocol 2 and later.
	MsgEdgeState MsgType = 4
	// MsgFleet is a region's relay of the states of every edge connected
	// to it (Fleet), sent to edges whose hello says protocol 2 or later.
	MsgFleet MsgType = 5
	// MsgCustomRouting is a region's custom routing state (CustomRouting),
	// sent to edges whose hello says protocol 3 or later.
	MsgCustomRouting MsgType = 6
	// MsgProbe is an edge's RTT probe, an empty object sent every
	// ProbeInterval: the edge's own packets are what its connection
	// measures the RTT with, and an idle edge otherwise sends none (the
	// region speaks every second, so QUIC sends no keep-alive either).
	// Regions skip it, as every reader skips what it does not know.
	MsgProbe MsgType = 7
)

// ProbeInterval is how often an edge sends MsgProbe on each control
// stream.
const ProbeInterval = time.Second

// ControlProto is the highest control protocol version this build speaks:
// 1 is hello, health and load; 2 adds edge states and their relay; 3 adds
// the custom routing state; 4 adds the region's own hello, which lists the
// capabilities it serves (Hello.Caps).
const ControlProto = 4

// MaxControlMsgLen bounds one control message body.
const MaxControlMsgLen = 1 << 20

// ErrControlTooLong is returned for a control message over MaxControlMsgLen.
var ErrControlTooLong = errors.New("control message too long")

// Hello is sent by the edge on a new control stream; a region from
// version 2 on answers with its own (older edges skip it: an edge never
// expected type 1 from a region).
type Hello struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	// Proto is the highest control protocol version the sender speaks.
	Proto int `json:"proto"`
	// Caps lists optional features the sender serves (CapStripe); a peer
	// uses a feature only when the other side listed it.
	Caps []string `json:"caps,omitempty"`
}

// Capabilities a Hello may list.
const (
	// CapStripe: the region accepts striped flows (FlagStriped, KindLane).
	CapStripe = "stripe"
	// CapFEC, in an edge's hello: the edge protects this connection with
	// forward error correction if the region does too; in the region's:
	// it does, both ways, from now on (docs/backbone-protocol.md,
	// "Forward error correction").
	CapFEC = "fec"
)

// Has reports whether the hello lists capability c.
func (h Hello) Has(c string) bool { return slices.Contains(h.Caps, c) }

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

// EdgeState is what an edge says of itself: the accelerators it is ready
// to serve and whether it is draining. Epoch and Seq order the states of
// one edge: a larger Epoch (the process's start, in Unix nanoseconds) is a
// restarted edge, and within an epoch a larger Seq is newer.
type EdgeState struct {
	// Node names the edge in a relayed state; a region ignores it from an
	// edge and uses the name in the edge's certificate.
	Node     string   `json:"node,omitempty"`
	Epoch    int64    `json:"epoch"`
	Seq      uint64   `json:"seq"`
	Draining bool     `json:"draining,omitempty"`
	Ready    []string `json:"ready"`
}

// Newer reports whether s supersedes o (a state of the same edge).
func (s EdgeState) Newer(o EdgeState) bool {
	return s.Epoch > o.Epoch || s.Epoch == o.Epoch && s.Seq > o.Seq
}

// Fleet is a region's relay: the last state of every edge that has a
// control stream open to it. It always lists them all.
type Fleet struct {
	Edges []EdgeState `json:"edges"`
}

// CustomRouting is a region's custom routing state: the run-time
// overrides of its subnets' allow rules (the edge holds the same
// configuration, so overrides are all it lacks) and the destinations it
// refuses without a dial. It always carries the whole state.
type CustomRouting struct {
	Overrides []CustomOverride `json:"overrides"`
	Down      []CustomDown     `json:"down"`
}

// CustomOverride is one run-time allow or deny: of a whole subnet (no
// address), every port of an address (no port), or one destination.
type CustomOverride struct {
	Subnet  string `json:"subnet"`
	Address string `json:"address,omitempty"`
	Port    uint16 `json:"port,omitempty"`
	Allow   bool   `json:"allow"`
}

// CustomDown is a destination the region refuses without a dial, for
// ForMillis more milliseconds (0: until the region says otherwise, as
// while its probe fails).
type CustomDown struct {
	Subnet    string `json:"subnet"`
	Dest      string `json:"dest"`
	ForMillis int64  `json:"for_ms,omitempty"`
}

// MaxCustomDown bounds the down destinations one message lists; a region
// with more sends the first ones (its edges forward the rest and the
// region refuses them itself).
const MaxCustomDown = 2048

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
