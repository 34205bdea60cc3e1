package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FlagTLS marks a stream whose client's TLS the edge terminated: the
// server name the client asked for (SNI) and the application protocol
// negotiated with it (ALPN) follow the header's other fields, for the
// region's PROXY header (TLVs) and its re-encryption towards the endpoint
// (docs/backbone-protocol.md, "TLS at the edge"). Edges set it only towards
// regions whose hello lists CapTLS.
const FlagTLS Flags = 1 << 2

// CapTLS: the region reads FlagTLS.
const CapTLS = "tls"

// MaxSNILen bounds Header.SNI (a DNS name).
const MaxSNILen = 253

// MaxALPNLen bounds Header.ALPN (RFC 7301: 1–255 bytes).
const MaxALPNLen = 255

// tlsExtraLen bounds the bytes FlagTLS adds to a header.
const tlsExtraLen = 2 + 1 + MaxSNILen + 1 + MaxALPNLen

// ErrTLSInfo is returned for a header whose TLS fields do not fit.
var ErrTLSInfo = errors.New("bad tls fields")

// appendTLS appends the FlagTLS fields:
//
//	version(2) sni_len(1) sni alpn_len(1) alpn
func appendTLS(b []byte, h *Header) ([]byte, error) {
	if len(h.SNI) > MaxSNILen || len(h.ALPN) > MaxALPNLen {
		return b, fmt.Errorf("%w: sni %d bytes, alpn %d bytes", ErrTLSInfo, len(h.SNI), len(h.ALPN))
	}
	b = binary.BigEndian.AppendUint16(b, h.TLSVersion)
	b = append(b, byte(len(h.SNI)))
	b = append(b, h.SNI...)
	b = append(b, byte(len(h.ALPN)))
	return append(b, h.ALPN...), nil
}

// readTLS reads the FlagTLS fields into h.
func readTLS(r io.Reader, h *Header) error {
	var buf [1 + MaxALPNLen]byte
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return err
	}
	h.TLSVersion = binary.BigEndian.Uint16(buf[:2])
	for _, f := range []*string{&h.SNI, &h.ALPN} {
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return err
		}
		n := int(buf[0])
		if f == &h.SNI && n > MaxSNILen {
			return fmt.Errorf("%w: sni %d bytes", ErrTLSInfo, n)
		}
		if _, err := io.ReadFull(r, buf[1:1+n]); err != nil {
			return err
		}
		*f = string(buf[1 : 1+n])
	}
	return nil
}
