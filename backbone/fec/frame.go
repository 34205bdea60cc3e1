// Package fec recovers random packet loss below QUIC: a net.PacketConn
// wrapper for a backbone UDP socket that, towards peers it was told to
// protect, follows every group of k datagrams with one parity frame (their
// XOR), and at the receiving end rebuilds a datagram of a group that lost
// exactly one, so that quic-go sees a packet arrive a little late instead
// of a loss that cuts its congestion window.
//
// Data datagrams are never changed: a group is "the datagrams sent to a
// peer since the previous parity frame", which the receiver knows by order
// of arrival, and it keeps one running XOR per peer rather than copies of
// the packets. Parity and report frames begin with a byte whose two high
// bits are clear, which QUIC never sends (every QUIC packet has the fixed
// bit 0x40 set; quic-go does not grease it), so they share the socket with
// plain QUIC and with peers that know nothing of FEC. The wire format and
// the negotiation are in docs/backbone-protocol.md, "Forward error
// correction".
package fec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame types: the first byte of an FEC frame. Both high bits are clear,
// which tells an FEC frame from a QUIC packet (fixed bit 0x40) and from a
// version negotiation packet (0x80).
const (
	typeParity byte = 0x2f
	typeReport byte = 0x2e
)

// MaxData is the longest datagram a group covers: quic-go's largest packet
// (protocol.MaxPacketBufferSize). Longer datagrams pass through uncounted
// at both ends.
const MaxData = 1452

// Group sizes: the data datagrams one parity frame covers.
const (
	MinGroup = 4
	MaxGroup = 16
)

const (
	parityHeaderLen = 8
	reportLen       = 20
	// maxFrame is the longest FEC frame: a parity over MaxData bytes.
	maxFrame = parityHeaderLen + MaxData
)

// IsFrame reports whether a datagram's first byte marks an FEC frame
// rather than a QUIC packet.
func IsFrame(b []byte) bool { return len(b) > 0 && b[0]&0xc0 == 0 }

// parity is a decoded parity frame.
//
//	0     type (0x2f)
//	1     k: data datagrams covered, 1..MaxGroup
//	2..3  group sequence number (big endian, wraps)
//	4..5  XOR of the covered datagrams' lengths
//	6..7  sum mod 2^16 of the covered datagrams' check words (their last two bytes)
//	8..   XOR of the covered datagrams, each zero-padded to the longest
type parity struct {
	k       int
	group   uint16
	lenXor  uint16
	sum     uint16
	payload []byte
}

var errFrame = errors.New("fec: malformed frame")

// parseParity decodes a parity frame; payload aliases b.
func parseParity(b []byte) (parity, error) {
	if len(b) < parityHeaderLen+2 || b[0] != typeParity {
		return parity{}, fmt.Errorf("%w: parity of %d bytes", errFrame, len(b))
	}
	p := parity{
		k:       int(b[1]),
		group:   binary.BigEndian.Uint16(b[2:]),
		lenXor:  binary.BigEndian.Uint16(b[4:]),
		sum:     binary.BigEndian.Uint16(b[6:]),
		payload: b[parityHeaderLen:],
	}
	if p.k < 1 || p.k > MaxGroup {
		return parity{}, fmt.Errorf("%w: parity covers %d datagrams", errFrame, p.k)
	}
	if len(p.payload) > MaxData {
		return parity{}, fmt.Errorf("%w: parity payload of %d bytes", errFrame, len(p.payload))
	}
	return p, nil
}

// appendParityHeader appends a parity frame's header.
func appendParityHeader(b []byte, k int, group, lenXor, sum uint16) []byte {
	b = append(b, typeParity, byte(k))
	b = binary.BigEndian.AppendUint16(b, group)
	b = binary.BigEndian.AppendUint16(b, lenXor)
	return binary.BigEndian.AppendUint16(b, sum)
}

// report is what a receiver tells the sender of a peer about the groups it
// saw, as cumulative counters (a lost report loses nothing).
//
//	0       type (0x2e)
//	1..3    reserved, zero
//	4..7    groups: parity frames that followed the previous one in sequence
//	8..11   covered: data datagrams those groups covered
//	12..15  lost: data datagrams of those groups that did not arrive
//	16..19  recovered: datagrams rebuilt
type report struct {
	groups, covered, lost, recovered uint32
}

func parseReport(b []byte) (report, error) {
	if len(b) != reportLen || b[0] != typeReport {
		return report{}, fmt.Errorf("%w: report of %d bytes", errFrame, len(b))
	}
	r := report{
		groups:    binary.BigEndian.Uint32(b[4:]),
		covered:   binary.BigEndian.Uint32(b[8:]),
		lost:      binary.BigEndian.Uint32(b[12:]),
		recovered: binary.BigEndian.Uint32(b[16:]),
	}
	if r.lost > r.covered || r.recovered > r.lost {
		return report{}, fmt.Errorf("%w: report of %d lost, %d recovered among %d", errFrame, r.lost, r.recovered, r.covered)
	}
	return r, nil
}

func (r report) append(b []byte) []byte {
	b = append(b, typeReport, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, r.groups)
	b = binary.BigEndian.AppendUint32(b, r.covered)
	b = binary.BigEndian.AppendUint32(b, r.lost)
	return binary.BigEndian.AppendUint32(b, r.recovered)
}

// checkWord is a datagram's contribution to a parity's sum: its last two
// bytes (for QUIC, part of the AEAD tag, so effectively random). A rebuilt
// datagram whose check word does not complete the sum came from a group
// that was not what the sender covered (reordering across a parity, a
// forged frame), and is not delivered.
func checkWord(b []byte) uint16 {
	if len(b) < 2 {
		return uint16(len(b))
	}
	return binary.BigEndian.Uint16(b[len(b)-2:])
}

// groupFor picks the group size for an estimated loss rate: the largest k
// whose residual loss (a datagram lost together with another of its group,
// about k·p²) stays under 1e-5, at least MinGroup.
func groupFor(loss float64) int {
	for k := MaxGroup; k > MinGroup; k /= 2 {
		if float64(k)*loss*loss <= 1e-5 {
			return k
		}
	}
	return MinGroup
}
