package dns

import (
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// BenchmarkHandlePacket is the server's whole work for one UDP query,
// sockets aside: parse, answer, rate-limit, pack.
func BenchmarkHandlePacket(b *testing.B) {
	z, err := NewZone(testZoneConfig())
	require.NoError(b, err)
	s, err := New(Config{Listen: []string{"127.0.0.1:0"}, RRL: RRLConfig{ResponsesPerSecond: 1_000_000}}, z)
	require.NoError(b, err)
	steered := new(dns.Msg).SetQuestion("game.accel.example.net.", dns.TypeA).SetEdns0(1232, false)
	steered.IsEdns0().Option = append(steered.IsEdns0().Option,
		&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(198, 18, 20, 0)})
	for _, tc := range []struct {
		name string
		q    *dns.Msg
	}{
		{"static-A", new(dns.Msg).SetQuestion("web.accel.example.net.", dns.TypeA)},
		{"steered-ECS", steered},
		{"nxdomain", new(dns.Msg).SetQuestion("nope.accel.example.net.", dns.TypeA)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			raw, err := tc.q.Pack()
			require.NoError(b, err)
			out := make([]byte, dns.MaxMsgSize)
			src := netip.MustParseAddr("198.18.20.7")
			b.ReportAllocs()
			for b.Loop() {
				if s.handlePacket(raw, src, false, out) == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
}
