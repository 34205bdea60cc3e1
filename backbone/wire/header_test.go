package wire

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Kind: KindTCP, ListenerPort: 80, EndpointID: "web-1", Client: netip.MustParseAddrPort("198.18.0.5:40000"), Accelerator: netip.MustParseAddrPort("203.0.113.10:80")},
		{Kind: KindUDP, ListenerPort: 3478, EndpointID: "a", FlowID: 1<<40 + 7, Client: netip.MustParseAddrPort("[2001:db8::5]:1"), Accelerator: netip.MustParseAddrPort("[2001:db8::10]:3478")},
		{Kind: KindControl},
		{Kind: KindTCP, Flags: FlagStriped, ListenerPort: 443, EndpointID: "web-2", FlowID: 42, Client: netip.MustParseAddrPort("198.18.0.5:40001"), Accelerator: netip.MustParseAddrPort("203.0.113.10:443")},
		{Kind: KindLane, FlowID: 42},
	} {
		b, err := AppendHeader(nil, &h)
		require.NoError(t, err)
		// Version 1 unless the header needs version 2: a region from before
		// version 2 reads every header an edge sends it unasked.
		wantVersion := byte(1)
		if h.Flags != 0 || h.Kind == KindLane {
			wantVersion = 2
		}
		require.Equal(t, wantVersion, b[0])
		require.LessOrEqual(t, len(b), MaxHeaderLen)
		r := bytes.NewReader(append(b, "payload"...))
		got, err := ReadHeader(r)
		require.NoError(t, err)
		if !got.Client.IsValid() {
			got.Client, got.Accelerator = h.Client, h.Accelerator
		}
		require.Equal(t, h.Kind, got.Kind)
		require.Equal(t, h.Flags, got.Flags)
		require.Equal(t, h.EndpointID, got.EndpointID)
		require.Equal(t, h.FlowID, got.FlowID)
		require.Equal(t, h.ListenerPort, got.ListenerPort)
		rest, _ := io.ReadAll(r)
		require.Equal(t, "payload", string(rest), "header reader must not consume payload")
	}
}

func TestHeaderRejects(t *testing.T) {
	good, err := AppendHeader(nil, &Header{Kind: KindTCP, ListenerPort: 80, EndpointID: "e", Client: netip.MustParseAddrPort("127.0.0.1:1"), Accelerator: netip.MustParseAddrPort("127.0.0.1:2")})
	require.NoError(t, err)
	cases := map[string]struct {
		b    []byte
		want error
	}{
		"empty":        {nil, io.EOF},
		"truncated":    {good[:len(good)-1], io.ErrUnexpectedEOF},
		"version 0":    {append([]byte{0}, good[1:]...), ErrVersion},
		"version 9":    {append([]byte{9}, good[1:]...), ErrVersion},
		"kind 0":       {append([]byte{1, 0}, good[2:]...), ErrKind},
		"id too long":  {append([]byte{1, 1, 0, 80, 64}, bytes.Repeat([]byte{'a'}, 100)...), ErrIDLength},
		"empty id tcp": {[]byte{1, 1, 0, 80, 0}, ErrIDLength},
		"bad family":   {append(append([]byte{}, good[:5+1+8]...), 5), ErrAddrFamily},
		"lane in v1":   {[]byte{1, 4, 0, 0, 0}, ErrKind},
		"kind 5":       {[]byte{2, 5, 0, 0, 0, 0}, ErrKind},
		"v2 truncated": {[]byte{2, 1, 1, 0, 80}, io.ErrUnexpectedEOF},
		"unknown flag": {[]byte{2, 1, 0x80, 0, 80, 1, 'e'}, ErrFlags},
		"hold truncated": {append(append([]byte{2, 1, byte(FlagHold)}, good[2:]...), 0, 200, 1, 3, 'a'),
			io.ErrUnexpectedEOF},
		"hold too many": {append(append([]byte{2, 1, byte(FlagHold)}, good[2:]...), 0, 200, MaxAlternates+1),
			ErrAlternates},
		"hold empty alternate": {append(append([]byte{2, 1, byte(FlagHold)}, good[2:]...), 0, 200, 1, 0),
			ErrAlternates},
		"tls sni too long": {append(append([]byte{2, 1, byte(FlagTLS)}, good[2:]...), 3, 4, MaxSNILen+1),
			ErrTLSInfo},
		"tls truncated": {append(append([]byte{2, 1, byte(FlagTLS)}, good[2:]...), 3, 4, 3, 'a', 'b', 'c', 2, 'h'),
			io.ErrUnexpectedEOF},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ReadHeader(bytes.NewReader(c.b))
			require.Error(t, err)
			require.True(t, errors.Is(err, c.want), "got %v", err)
		})
	}
	_, err = AppendHeader(nil, &Header{Kind: KindTCP, EndpointID: string(bytes.Repeat([]byte{'x'}, 64))})
	require.ErrorIs(t, err, ErrIDLength)
	_, err = AppendHeader(nil, &Header{Kind: KindTCP, Flags: FlagHold, EndpointID: "a", Alternates: make([]string, MaxAlternates+1)})
	require.ErrorIs(t, err, ErrAlternates)
}

// TestHeldHeader: a held header carries its candidates and hedge delay,
// and TLS fields the client's SNI and ALPN; such headers are version 2,
// and the longest one fits MaxHeaderLen.
func TestHeldHeader(t *testing.T) {
	long := string(bytes.Repeat([]byte{'x'}, MaxEndpointIDLen))
	h := Header{Kind: KindTCP, Flags: FlagHold | FlagTLS, ListenerPort: 443, EndpointID: long,
		Alternates: []string{long, long, long, long}, HedgeDelay: 250 * time.Millisecond,
		SNI: string(bytes.Repeat([]byte{'s'}, MaxSNILen)), ALPN: string(bytes.Repeat([]byte{'a'}, MaxALPNLen)), TLSVersion: 0x0304,
		Client:      netip.MustParseAddrPort("[2001:db8::5]:40000"),
		Accelerator: netip.MustParseAddrPort("[2001:db8::10]:443")}
	b, err := AppendHeader(nil, &h)
	require.NoError(t, err)
	require.EqualValues(t, 2, b[0])
	require.Len(t, b, MaxHeaderLen)
	r := bytes.NewReader(append(b, "payload"...))
	got, err := ReadHeader(r)
	require.NoError(t, err)
	require.Equal(t, h, got)
	require.Equal(t, []string{long, long, long, long, long}, got.Candidates())
	rest, _ := io.ReadAll(r)
	require.Equal(t, "payload", string(rest))

	tlsOnly := Header{Kind: KindTCP, Flags: FlagTLS, ListenerPort: 443, EndpointID: "web", SNI: "www.example.test", ALPN: "h2",
		Client: netip.MustParseAddrPort("198.18.0.5:1"), Accelerator: netip.MustParseAddrPort("203.0.113.10:443")}
	b, err = AppendHeader(nil, &tlsOnly)
	require.NoError(t, err)
	got, err = ReadHeader(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, tlsOnly, got)
	tlsOnly.SNI = string(bytes.Repeat([]byte{'s'}, MaxSNILen+1))
	_, err = AppendHeader(nil, &tlsOnly)
	require.ErrorIs(t, err, ErrTLSInfo)

	require.Equal(t, []byte{0, 3}, AppendAnswer(nil, CodeOK, true, 3))
	require.Equal(t, []byte{0}, AppendAnswer(nil, CodeOK, false, 3))
	require.Equal(t, []byte{4}, AppendAnswer(nil, CodeDialRefused, true, 0))
}

func FuzzReadHeader(f *testing.F) {
	good, _ := AppendHeader(nil, &Header{Kind: KindTCP, ListenerPort: 80, EndpointID: "web-1", Client: netip.MustParseAddrPort("127.0.0.1:1"), Accelerator: netip.MustParseAddrPort("[::1]:2")})
	f.Add(good)
	f.Add([]byte{1, 3, 0, 0, 0})
	striped, _ := AppendHeader(nil, &Header{Kind: KindTCP, Flags: FlagStriped, FlowID: 9, ListenerPort: 80, EndpointID: "web-1", Client: netip.MustParseAddrPort("127.0.0.1:1"), Accelerator: netip.MustParseAddrPort("127.0.0.1:2")})
	f.Add(striped)
	lane, _ := AppendHeader(nil, &Header{Kind: KindLane, FlowID: 9})
	f.Add(lane)
	held, _ := AppendHeader(nil, &Header{Kind: KindTCP, Flags: FlagHold, ListenerPort: 80, EndpointID: "web-1",
		Alternates: []string{"web-2", "web-3"}, HedgeDelay: 200 * time.Millisecond,
		Client: netip.MustParseAddrPort("127.0.0.1:1"), Accelerator: netip.MustParseAddrPort("127.0.0.1:2")})
	f.Add(held)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		out, err := AppendHeader(nil, &h)
		if err != nil {
			t.Fatalf("decoded header does not encode: %v", err)
		}
		h2, err := ReadHeader(bytes.NewReader(out))
		if err != nil || !reflect.DeepEqual(h2, h) {
			t.Fatalf("round trip: %v %+v != %+v", err, h2, h)
		}
	})
}

func BenchmarkHeader(b *testing.B) {
	h := Header{Kind: KindTCP, ListenerPort: 80, EndpointID: "web-1", Client: netip.MustParseAddrPort("198.18.0.5:40000"), Accelerator: netip.MustParseAddrPort("203.0.113.10:80")}
	buf := make([]byte, 0, MaxHeaderLen)
	r := bytes.NewReader(nil)
	b.ReportAllocs()
	for b.Loop() {
		out, _ := AppendHeader(buf[:0], &h)
		r.Reset(out)
		if _, err := ReadHeader(r); err != nil {
			b.Fatal(err)
		}
	}
}
