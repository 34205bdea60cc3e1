package gateway

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/anyedge/anyedge/backbone/wire"
)

// FuzzProxyHeader feeds arbitrary bytes to the backbone header decoder, as
// an edge's stream would, and every header it accepts to the PROXY v2
// writers of the TCP and UDP paths; go-proxyproto's reader must take each
// written header back to the client and accelerator addresses (IPv4-mapped
// ones as IPv4, mixed families as IPv6), the TLS facts of a FlagTLS header,
// and exactly the header's bytes, leaving the payload after it untouched.
// Seeds are in testdata/fuzz/FuzzProxyHeader.
func FuzzProxyHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := wire.ReadHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, udp := range []bool{false, true} {
			var out bytes.Buffer
			if udp {
				hdr, err := proxyHeader(&h, true)
				if err != nil {
					t.Fatalf("udp: no PROXY header for %+v: %v", h, err)
				}
				p, err := hdr.Format()
				if err != nil {
					t.Fatalf("udp: PROXY header of %+v does not format: %v", h, err)
				}
				out.Write(p)
			} else if err := writeProxyHeader(&out, &h); err != nil {
				t.Fatalf("tcp: PROXY header of %+v not written: %v", h, err)
			}
			const payload = "payload"
			out.WriteString(payload)
			r := bufio.NewReader(&out)
			got, err := proxyproto.Read(r)
			if err != nil {
				t.Fatalf("udp %v: go-proxyproto refuses the header of %+v: %v", udp, h, err)
			}
			if rest, _ := r.ReadString(0); rest != payload {
				t.Fatalf("udp %v: after the header comes %q, not the payload", udp, rest)
			}
			checkProxyHeader(t, &h, got, udp)
		}
	})
}

func checkProxyHeader(t *testing.T, h *wire.Header, got *proxyproto.Header, udp bool) {
	t.Helper()
	client := netip.AddrPortFrom(h.Client.Addr().Unmap(), h.Client.Port())
	accel := netip.AddrPortFrom(h.Accelerator.Addr().Unmap(), h.Accelerator.Port())
	v4 := client.Addr().Is4() && accel.Addr().Is4()
	want := map[[2]bool]proxyproto.AddressFamilyAndProtocol{
		{false, true}: proxyproto.TCPv4, {false, false}: proxyproto.TCPv6,
		{true, true}: proxyproto.UDPv4, {true, false}: proxyproto.UDPv6,
	}[[2]bool{udp, v4}]
	if got.Version != 2 || got.Command != proxyproto.PROXY || got.TransportProtocol != want {
		t.Fatalf("udp %v: version %d, command %v, protocol %v; want 2, PROXY, %v", udp, got.Version, got.Command, got.TransportProtocol, want)
	}
	addr := func(a net.Addr) netip.AddrPort {
		var ap netip.AddrPort
		switch a := a.(type) {
		case *net.TCPAddr:
			ap = a.AddrPort()
		case *net.UDPAddr:
			ap = a.AddrPort()
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if src, dst := addr(got.SourceAddr), addr(got.DestinationAddr); src != client || dst != accel {
		t.Fatalf("udp %v: PROXY says %s → %s, the backbone header %s → %s", udp, src, dst, client, accel)
	}
	tlvs, err := got.TLVs()
	if err != nil {
		t.Fatalf("udp %v: TLVs: %v", udp, err)
	}
	if h.Flags&wire.FlagTLS == 0 {
		if len(tlvs) != 0 {
			t.Fatalf("udp %v: TLVs without FlagTLS: %v", udp, tlvs)
		}
		return
	}
	values := map[proxyproto.PP2Type]string{}
	for _, tlv := range tlvs {
		values[tlv.Type] = string(tlv.Value)
	}
	if values[proxyproto.PP2_TYPE_ALPN] != h.ALPN || values[proxyproto.PP2_TYPE_AUTHORITY] != h.SNI {
		t.Fatalf("udp %v: ALPN %q and authority %q, want %q and %q", udp, values[proxyproto.PP2_TYPE_ALPN],
			values[proxyproto.PP2_TYPE_AUTHORITY], h.ALPN, h.SNI)
	}
	ssl, ok := tlvparse.FindSSL(tlvs)
	if !ok || !ssl.ClientSSL() {
		t.Fatalf("udp %v: no SSL TLV with the client-SSL bit: %v", udp, tlvs)
	}
	if v, _ := ssl.SSLVersion(); v != tlsVersionName(h.TLSVersion) {
		t.Fatalf("udp %v: SSL version %q, want %q", udp, v, tlsVersionName(h.TLSVersion))
	}
}
