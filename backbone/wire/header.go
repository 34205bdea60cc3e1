// Package wire is the byte layout of the anyedge backbone: the header that
// opens every data stream, the one-byte answer a region gives to it, the
// flow-ID prefix of UDP datagrams, and the framing of control messages.
// See docs/backbone-protocol.md for the whole protocol.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Version is the newest header version this build reads and writes.
// Readers accept every version up to and including it. A writer uses
// version 1 unless the header needs a field of version 2 (flags, or a kind
// added with it), so that a region from before version 2 still reads every
// header an edge sends it unless the region itself advertised more (see
// Hello.Caps).
const Version = 2

// Flags are the header's flag bits (version 2 and later).
type Flags uint8

// Header flags.
const (
	// FlagStriped says the stream's payload (after the header one way,
	// after the one-byte answer the other way) is framed by backbone/stripe,
	// and FlowID is the striped flow's ID for the lanes that join it.
	FlagStriped Flags = 1 << 0
)

// Kind says what a stream carries.
type Kind uint8

// Stream kinds.
const (
	// KindTCP carries one client TCP connection.
	KindTCP Kind = 1
	// KindUDP carries the packets of one UDP flow that did not fit in a
	// datagram, each prefixed with its 16-bit length.
	KindUDP Kind = 2
	// KindControl is the per-connection control stream.
	KindControl Kind = 3
	// KindLane is an extra lane of a striped flow (version 2): FlowID names
	// the flow, there is no endpoint ID, and the payload is stripe frames.
	KindLane Kind = 4
)

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case KindTCP:
		return "tcp"
	case KindUDP:
		return "udp"
	case KindControl:
		return "control"
	case KindLane:
		return "lane"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MaxEndpointIDLen is the longest endpoint ID a header may carry.
const MaxEndpointIDLen = 63

// MaxHeaderLen bounds the encoded size of a Header.
const MaxHeaderLen = 5 + 1 + MaxEndpointIDLen + 8 + 2*(1+16+2) + holdExtraLen + tlsExtraLen

// Header opens a data stream. It names the endpoint by ID (never by
// address), the client and the accelerator address the client reached, and
// the listener port, which the region maps to the endpoint port.
type Header struct {
	Kind Kind
	// Flags (version 2); zero in a version 1 header.
	Flags Flags
	// ListenerPort is the port of the listener that accepted the flow.
	ListenerPort uint16
	// EndpointID names the endpoint in the region's own configuration.
	EndpointID string
	// FlowID identifies a UDP flow (zero for TCP).
	FlowID uint64
	// Client is the client's address and port.
	Client netip.AddrPort
	// Accelerator is the anycast address and port the client sent to.
	Accelerator netip.AddrPort
	// Alternates (FlagHold) are further endpoints of the same group, in
	// the flow's rendezvous order after EndpointID (hold.go).
	Alternates []string
	// HedgeDelay (FlagHold) is how long the region waits for a candidate's
	// dial before starting the next one in parallel; millisecond
	// resolution, at most 65.535 s.
	HedgeDelay time.Duration
	// SNI and ALPN (FlagTLS) are what the client's TLS handshake with the
	// edge asked for and negotiated, TLSVersion its version
	// (tls.VersionTLS13, …; tlsinfo.go).
	SNI, ALPN  string
	TLSVersion uint16
}

// Errors returned by ReadHeader; each maps to a refusal code.
var (
	ErrVersion    = errors.New("unsupported header version")
	ErrKind       = errors.New("unknown stream kind")
	ErrIDLength   = errors.New("endpoint id length out of range")
	ErrAddrFamily = errors.New("unknown address family")
)

// noEndpoint reports whether a kind carries no endpoint ID.
func noEndpoint(k Kind) bool { return k == KindControl || k == KindLane }

// AppendHeader appends the encoding of h to b:
//
//	version(1) kind(1) [flags(1), version 2] listener_port(2) id_len(1) id(id_len)
//	flow_id(8) client(addr) accelerator(addr)
//
// where addr is family(1: 4 or 6) ip(4 or 16) port(2), big-endian. Callers
// unmap IPv4-mapped IPv6 addresses first when they want the short form.
// The version is 1 unless h has flags or a version 2 kind.
func AppendHeader(b []byte, h *Header) ([]byte, error) {
	if len(h.EndpointID) > MaxEndpointIDLen || (!noEndpoint(h.Kind) && len(h.EndpointID) == 0) {
		return b, fmt.Errorf("%w: %d", ErrIDLength, len(h.EndpointID))
	}
	if h.Flags == 0 && h.Kind != KindLane {
		b = append(b, 1, byte(h.Kind))
	} else {
		b = append(b, 2, byte(h.Kind), byte(h.Flags))
	}
	b = binary.BigEndian.AppendUint16(b, h.ListenerPort)
	b = append(b, byte(len(h.EndpointID)))
	b = append(b, h.EndpointID...)
	b = binary.BigEndian.AppendUint64(b, h.FlowID)
	b = appendAddr(b, h.Client)
	b = appendAddr(b, h.Accelerator)
	var err error
	if h.Flags&FlagHold != 0 {
		if b, err = appendHold(b, h); err != nil {
			return b, err
		}
	}
	if h.Flags&FlagTLS != 0 {
		return appendTLS(b, h)
	}
	return b, nil
}

func appendAddr(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr()
	if a.Is4() {
		b = append(b, 4)
		v := a.As4()
		b = append(b, v[:]...)
	} else {
		b = append(b, 6)
		v := a.As16()
		b = append(b, v[:]...)
	}
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

// ReadHeader reads one header from r. It reads exactly the bytes of the
// header and never more, so that the stream's payload stays in r.
func ReadHeader(r io.Reader) (Header, error) {
	var h Header
	var fixed [5]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return h, fmt.Errorf("header: %w", err)
	}
	if fixed[0] == 0 || fixed[0] > Version {
		return h, fmt.Errorf("%w: %d", ErrVersion, fixed[0])
	}
	h.Kind = Kind(fixed[1])
	if h.Kind < KindTCP || h.Kind > KindLane || (h.Kind == KindLane && fixed[0] < 2) {
		return h, fmt.Errorf("%w: %d", ErrKind, fixed[1])
	}
	if fixed[0] >= 2 {
		// Version 2 put the flags where version 1 starts the listener port.
		h.Flags = Flags(fixed[2])
		if h.Flags&^knownFlags != 0 {
			return h, fmt.Errorf("%w: %#x", ErrFlags, uint8(h.Flags))
		}
		copy(fixed[2:4], fixed[3:5])
		if _, err := io.ReadFull(r, fixed[4:5]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return h, fmt.Errorf("header: %w", err)
		}
	}
	h.ListenerPort = binary.BigEndian.Uint16(fixed[2:4])
	n := int(fixed[4])
	if n > MaxEndpointIDLen || (n == 0 && !noEndpoint(h.Kind)) {
		return h, fmt.Errorf("%w: %d", ErrIDLength, n)
	}
	var buf [MaxEndpointIDLen + 8]byte
	if _, err := io.ReadFull(r, buf[:n+8]); err != nil {
		return h, fmt.Errorf("header: endpoint id: %w", err)
	}
	h.EndpointID = string(buf[:n])
	h.FlowID = binary.BigEndian.Uint64(buf[n : n+8])
	var err error
	if h.Client, err = readAddr(r); err != nil {
		return h, fmt.Errorf("header: client address: %w", err)
	}
	if h.Accelerator, err = readAddr(r); err != nil {
		return h, fmt.Errorf("header: accelerator address: %w", err)
	}
	if h.Flags&FlagHold != 0 {
		if err := readHold(r, &h); err != nil {
			return h, fmt.Errorf("header: hold: %w", unexpectedEOF(err))
		}
	}
	if h.Flags&FlagTLS != 0 {
		if err := readTLS(r, &h); err != nil {
			return h, fmt.Errorf("header: tls: %w", unexpectedEOF(err))
		}
	}
	return h, nil
}

func readAddr(r io.Reader) (netip.AddrPort, error) {
	var buf [1 + 16 + 2]byte
	if _, err := io.ReadFull(r, buf[:1]); err != nil {
		return netip.AddrPort{}, err
	}
	var a netip.Addr
	var rest []byte
	switch buf[0] {
	case 4:
		rest = buf[1 : 1+4+2]
		if _, err := io.ReadFull(r, rest); err != nil {
			return netip.AddrPort{}, err
		}
		a = netip.AddrFrom4([4]byte(rest[:4]))
		rest = rest[4:]
	case 6:
		rest = buf[1 : 1+16+2]
		if _, err := io.ReadFull(r, rest); err != nil {
			return netip.AddrPort{}, err
		}
		a = netip.AddrFrom16([16]byte(rest[:16]))
		rest = rest[16:]
	default:
		return netip.AddrPort{}, fmt.Errorf("%w: %d", ErrAddrFamily, buf[0])
	}
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(rest)), nil
}

// unexpectedEOF turns an EOF inside a header into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
