package dns

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// FuzzHandlePacket: whatever arrives, the handler does not panic, and
// what it sends back is a well-formed response to the same ID.
func FuzzHandlePacket(f *testing.F) {
	z, err := NewZone(testZoneConfig())
	require.NoError(f, err)
	s, err := New(Config{Listen: []string{"127.0.0.1:0"}, RRL: RRLConfig{ResponsesPerSecond: 1 << 20}}, z)
	require.NoError(f, err)
	for _, seed := range seedQueries(f) {
		f.Add(seed)
	}
	out := make([]byte, dns.MaxMsgSize)
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, tcp := range []bool{false, true} {
			reply := s.handlePacket(raw, netip.MustParseAddr("198.18.20.7"), tcp, out)
			if reply == nil {
				continue
			}
			if !tcp {
				require.LessOrEqual(t, len(reply), 4096)
			}
			var m dns.Msg
			require.NoError(t, m.Unpack(reply), "the server sent a packet it cannot read back")
			require.True(t, m.Response)
			require.Equal(t, binary.BigEndian.Uint16(raw), m.Id)
		}
	})
}

// seedQueries are the kinds of query the server sees, packed; they also
// live in testdata/fuzz/FuzzHandlePacket.
func seedQueries(tb testing.TB) [][]byte {
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		require.NoError(tb, err)
		return b
	}
	q := func(name string, t uint16) *dns.Msg { return new(dns.Msg).SetQuestion(name, t) }
	ecs := q("game.accel.example.net.", dns.TypeA).SetEdns0(1232, false)
	ecs.IsEdns0().Option = append(ecs.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(198, 18, 20, 0)})
	badvers := q("web.accel.example.net.", dns.TypeA).SetEdns0(4096, true)
	badvers.IsEdns0().SetVersion(1)
	notify := q("accel.example.net.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	two := q("web.accel.example.net.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	return [][]byte{
		pack(q("web.accel.example.net.", dns.TypeA)),
		pack(q("game.accel.example.net.", dns.TypeAAAA)),
		pack(q("accel.example.net.", dns.TypeNS)),
		pack(q("accel.example.net.", dns.TypeANY)),
		pack(q("nope.accel.example.net.", dns.TypeA)),
		pack(q("example.com.", dns.TypeA)),
		pack(ecs), pack(badvers), pack(notify), pack(two),
		{0x12, 0x34},
		make([]byte, 12),
	}
}

// TestMalformed: garbage over UDP and TCP is counted, never answered with
// more than a FORMERR, and the server keeps serving.
func TestMalformed(t *testing.T) {
	s := startServer(t, testZoneConfig(), Config{})
	ap := s.Addrs()[0]
	uc, err := net.Dial("udp", ap.String())
	require.NoError(t, err)
	defer uc.Close()
	resp := new(dns.Msg).SetQuestion("web.accel.example.net.", dns.TypeA)
	resp.Response = true
	respBytes, err := resp.Pack()
	require.NoError(t, err)
	query, err := new(dns.Msg).SetQuestion("web.accel.example.net.", dns.TypeA).Pack()
	require.NoError(t, err)
	for _, bad := range [][]byte{{1, 2, 3}, []byte("GET / HTTP/1.1\r\n\r\n"), respBytes, query[:len(query)-3]} {
		_, err := uc.Write(bad)
		require.NoError(t, err)
	}
	tc, err := net.Dial("tcp", ap.String())
	require.NoError(t, err)
	defer tc.Close()
	_, err = tc.Write([]byte{0, 5, 1, 2, 3, 4, 5})
	require.NoError(t, err)

	waitFor(t, func() bool { return s.Stats().Malformed == 5 }, "malformed packets counted")
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(new(dns.Msg).SetQuestion("web.accel.example.net.", dns.TypeA), ap.String())
	require.NoError(t, err)
	require.Len(t, r.Answer, 2, "still serving")
	require.Zero(t, s.Stats().Responses["FORMERR"], "UDP garbage is not answered")
}

// waitFor polls cond until it holds, with a generous deadline.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
