package fec

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// segmentSize is the UDP_SEGMENT size in a write's control messages (GSO:
// one write of several datagrams of that size, the last maybe shorter), or
// 0 when there is none.
func segmentSize(oob []byte) int {
	for len(oob) > 0 {
		h, body, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_SEGMENT && len(body) >= 2 {
			return int(binary.NativeEndian.Uint16(body))
		}
		oob = rest
	}
	return 0
}

// appendWithoutGSO appends oob's control messages except UDP_SEGMENT: what
// an FEC frame to the same peer is sent with (the source address of a
// socket bound to any address, the ECN codepoint).
func appendWithoutGSO(dst, oob []byte) []byte {
	for len(oob) > 0 {
		h, _, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return dst
		}
		msg := oob[:len(oob)-len(rest)]
		if h.Level != unix.SOL_UDP || h.Type != unix.UDP_SEGMENT {
			dst = append(dst, msg...)
		}
		oob = rest
	}
	return dst
}
