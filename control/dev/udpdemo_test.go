package dev

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestUDPDemoReply(t *testing.T) {
	src := netip.MustParseAddrPort("127.0.0.1:40000")
	client := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 9), Port: 5555}
	accel := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8053}
	proxy, err := proxyproto.HeaderProxyFromAddrs(2, client, accel).Format()
	require.NoError(t, err)
	query := func(typ uint16) []byte {
		m := new(dns.Msg)
		m.SetQuestion("hello.anyedge.", typ)
		b, err := m.Pack()
		require.NoError(t, err)
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		// want is the TXT string, the A address, or the echo.
		want string
		typ  uint16
	}{
		{"txt", query(dns.TypeTXT), "hello from udp-echo-1 through anyedge (client 127.0.0.1:40000)", dns.TypeTXT},
		{"txt behind proxy v2", append(append([]byte{}, proxy...), query(dns.TypeTXT)...),
			"hello from udp-echo-1 through anyedge (client 198.18.0.9:5555)", dns.TypeTXT},
		{"a", query(dns.TypeA), "127.0.0.1", dns.TypeA},
		{"echo", []byte("hello\n"), "udp-echo-1: hello\n", 0},
		{"echo behind proxy v2", append(append([]byte{}, proxy...), "hi"...), "udp-echo-1: hi", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := udpDemoReply("udp-echo-1", tc.in, src)
			require.NotNil(t, out)
			if tc.typ == 0 {
				require.True(t, bytes.Equal([]byte(tc.want), out), "%q", out)
				return
			}
			var m dns.Msg
			require.NoError(t, m.Unpack(out))
			require.Len(t, m.Answer, 1)
			switch rr := m.Answer[0].(type) {
			case *dns.TXT:
				require.Equal(t, []string{tc.want}, rr.Txt)
			case *dns.A:
				require.Equal(t, tc.want, rr.A.String())
			}
		})
	}
	require.Nil(t, udpDemoReply("x", append([]byte{}, proxy[:14]...), src), "a broken PROXY header gets no answer")
}
