package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/quic-go/quic-go/quicvarint"
)

// MaxFlowID is the largest flow ID a datagram prefix can carry (the QUIC
// variable-length integer maximum, 2^62-1).
const MaxFlowID = quicvarint.Max

// MaxPacketLen is the largest UDP payload the stream fallback frames: the
// length prefix is 16 bits.
const MaxPacketLen = 0xffff

// Errors returned by the UDP decoders.
var (
	ErrDatagram  = errors.New("malformed datagram")
	ErrPacketLen = errors.New("packet too long for the stream framing")
)

// AppendDatagram appends the datagram for one UDP packet of a flow to b:
//
//	flow_id(varint) payload
//
// flowID must not exceed MaxFlowID.
func AppendDatagram(b []byte, flowID uint64, payload []byte) []byte {
	b = quicvarint.Append(b, flowID)
	return append(b, payload...)
}

// DatagramOverhead returns the bytes the flow-ID prefix of flowID takes.
func DatagramOverhead(flowID uint64) int { return quicvarint.Len(flowID) }

// ParseDatagram splits a received datagram into its flow ID and payload;
// payload aliases b.
func ParseDatagram(b []byte) (flowID uint64, payload []byte, err error) {
	id, n, err := quicvarint.Parse(b)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: flow id: %w", ErrDatagram, err)
	}
	return id, b[n:], nil
}

// AppendPacket appends one UDP packet in the stream-fallback framing of a
// KindUDP stream to b:
//
//	length(2, big-endian) payload(length)
func AppendPacket(b, payload []byte) ([]byte, error) {
	if len(payload) > MaxPacketLen {
		return b, fmt.Errorf("%w: %d bytes", ErrPacketLen, len(payload))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...), nil
}

// ReadPacket reads one framed packet from r into buf and returns its
// length. buf must hold MaxPacketLen bytes. io.EOF means the stream ended
// cleanly between packets; a stream that ends inside a packet yields
// io.ErrUnexpectedEOF.
func ReadPacket(r io.Reader, buf []byte) (int, error) {
	if len(buf) < MaxPacketLen {
		return 0, fmt.Errorf("%w: buffer of %d bytes", ErrPacketLen, len(buf))
	}
	n, err := ReadPacketLen(r)
	if err != nil {
		return 0, err
	}
	return n, ReadPacketBody(r, buf[:n])
}

// ReadPacketLen reads the length of the next framed packet from r, whose
// n bytes ReadPacketBody then reads: a reader that waits for packets need
// not hold a buffer while it waits. io.EOF means the stream ended cleanly
// between packets.
func ReadPacketLen(r io.Reader) (int, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return 0, err
	}
	return int(binary.BigEndian.Uint16(l[:])), nil
}

// ReadPacketBody reads the len(buf) bytes of a packet whose length
// ReadPacketLen returned; a stream that ends inside it yields
// io.ErrUnexpectedEOF.
func ReadPacketBody(r io.Reader, buf []byte) error {
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}
