package gateway

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/anyedge/anyedge/backbone/wire"
)

// proxyHeader is the PROXY protocol v2 header that tells an endpoint who
// the flow's client is: the client's address and the accelerator address
// it reached, from the flow's backbone header h (decoded from the edge's
// bytes: FuzzProxyHeader checks that whatever ReadHeader accepts becomes
// a header that a PROXY reader takes back to the same addresses). TCP, or
// UDP with udp set; with TLS at the edge (FlagTLS), TLVs say what the
// client's TLS was. IPv4-mapped addresses are sent as IPv4; a client and
// an accelerator of different families are both sent as IPv6 (go-proxyproto
// picks the family from both addresses).
func proxyHeader(h *wire.Header, udp bool) (*proxyproto.Header, error) {
	client := netip.AddrPortFrom(h.Client.Addr().Unmap(), h.Client.Port())
	accel := netip.AddrPortFrom(h.Accelerator.Addr().Unmap(), h.Accelerator.Port())
	var src, dst net.Addr = net.TCPAddrFromAddrPort(client), net.TCPAddrFromAddrPort(accel)
	if udp {
		src, dst = net.UDPAddrFromAddrPort(client), net.UDPAddrFromAddrPort(accel)
	}
	hdr := proxyproto.HeaderProxyFromAddrs(2, src, dst)
	if h.Flags&wire.FlagTLS != 0 {
		if err := hdr.SetTLVs(tlsTLVs(h)); err != nil {
			return nil, err
		}
	}
	return hdr, nil
}

// writeProxyHeader writes the flow's PROXY header to w, a TCP endpoint.
func writeProxyHeader(w io.Writer, h *wire.Header) error {
	hdr, err := proxyHeader(h, false)
	if err != nil {
		return err
	}
	_, err = hdr.WriteTo(w)
	return err
}

// tlsTLVs tells an endpoint behind a PROXY header what the client's TLS
// with the edge was (PROXY protocol v2, section 2.2): the application
// protocol (PP2_TYPE_ALPN), the server name (PP2_TYPE_AUTHORITY) and that
// TLS was used, with its version (PP2_TYPE_SSL, PP2_SUBTYPE_SSL_VERSION,
// as HAProxy spells it: "TLSv1.3"). The version is always there: the
// specification requires it with the client-SSL bit, and readers such as
// go-proxyproto refuse an SSL TLV without it.
func tlsTLVs(h *wire.Header) []proxyproto.TLV {
	var tlvs []proxyproto.TLV
	if h.ALPN != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(h.ALPN)})
	}
	if h.SNI != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(h.SNI)})
	}
	ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL,
		TLV: []proxyproto.TLV{{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(tlsVersionName(h.TLSVersion))}}}
	if t, err := ssl.Marshal(); err == nil {
		tlvs = append(tlvs, t)
	}
	return tlvs
}

// tlsVersionName names a TLS version as OpenSSL (and so HAProxy) does:
// "TLSv1.3", …, and "unknown" for a version it does not know (an edge
// sends 0 when it could not tell).
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	case 0x0300: // SSL 3.0
		return "SSLv3"
	}
	return "unknown"
}
