package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Held delivery (FlagHold, version 2; docs/backbone-protocol.md, "Held
// delivery"): the edge names the flow's candidate endpoints of one group in
// its rendezvous order, and the region, which holds the client's first
// bytes in the stream, dials them itself — the next one at once on a
// refusal, in parallel after HedgeDelay on a slow answer — and delivers the
// bytes once, to the first dial that connects; the losing dials are closed
// before a byte is written to them. Its answer to such a stream says which
// candidate won.

// FlagHold marks a held TCP stream: Header.Alternates and
// Header.HedgeDelay follow the accelerator address, and the answer to an
// OK is two bytes (code, winner). Edges set it only towards regions whose
// hello lists CapHold.
const FlagHold Flags = 1 << 1

// knownFlags are the flags this build reads; a header with any other is
// refused (bad header) rather than misread.
const knownFlags = FlagStriped | FlagHold | FlagTLS

// CapHold: the region serves held streams (FlagHold).
const CapHold = "hold"

// HoldBudget is how long after its first dial a region may still start a
// held stream's next candidate (the edge's default retry budget): an edge
// waits that much longer than for another stream's answer.
const HoldBudget = time.Second

// MaxAlternates bounds Header.Alternates.
const MaxAlternates = 4

// holdExtraLen bounds the bytes FlagHold adds to a header.
const holdExtraLen = 2 + 1 + MaxAlternates*(1+MaxEndpointIDLen)

// ErrAlternates is returned for a held header with too many alternates or
// an alternate ID of a bad length.
var ErrAlternates = errors.New("bad alternates")

// ErrFlags is returned for a header with flags this build does not know.
var ErrFlags = errors.New("unknown header flags")

// appendHold appends the FlagHold fields:
//
//	hedge_ms(2) n(1) n × (id_len(1) id(id_len))
func appendHold(b []byte, h *Header) ([]byte, error) {
	if len(h.Alternates) > MaxAlternates {
		return b, fmt.Errorf("%w: %d, at most %d", ErrAlternates, len(h.Alternates), MaxAlternates)
	}
	ms := h.HedgeDelay.Milliseconds()
	b = binary.BigEndian.AppendUint16(b, uint16(min(max(ms, 0), 0xffff)))
	b = append(b, byte(len(h.Alternates)))
	for _, id := range h.Alternates {
		if len(id) == 0 || len(id) > MaxEndpointIDLen {
			return b, fmt.Errorf("%w: id length %d", ErrAlternates, len(id))
		}
		b = append(b, byte(len(id)))
		b = append(b, id...)
	}
	return b, nil
}

// readHold reads the FlagHold fields into h.
func readHold(r io.Reader, h *Header) error {
	var fixed [3]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return err
	}
	h.HedgeDelay = time.Duration(binary.BigEndian.Uint16(fixed[:2])) * time.Millisecond
	n := int(fixed[2])
	if n > MaxAlternates {
		return fmt.Errorf("%w: %d, at most %d", ErrAlternates, n, MaxAlternates)
	}
	h.Alternates = make([]string, 0, n)
	var buf [1 + MaxEndpointIDLen]byte
	for range n {
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return err
		}
		l := int(buf[0])
		if l == 0 || l > MaxEndpointIDLen {
			return fmt.Errorf("%w: id length %d", ErrAlternates, l)
		}
		if _, err := io.ReadFull(r, buf[1:1+l]); err != nil {
			return err
		}
		h.Alternates = append(h.Alternates, string(buf[1:1+l]))
	}
	return nil
}

// Candidates returns the endpoints a held stream names, in order: the
// endpoint ID, then the alternates. A stream without FlagHold names one.
func (h *Header) Candidates() []string {
	return append([]string{h.EndpointID}, h.Alternates...)
}

// AppendAnswer appends the region's answer to a stream: the code, and for
// an OK to a held stream the index of the candidate that won (0 is
// EndpointID, i the alternate i−1).
func AppendAnswer(b []byte, c Code, held bool, winner int) []byte {
	b = append(b, byte(c))
	if held && c == CodeOK {
		b = append(b, byte(winner))
	}
	return b
}
