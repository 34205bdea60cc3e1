package edge

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// clientHello returns the first flight of a real crypto/tls client: one
// handshake record holding a ClientHello.
func clientHello(t testing.TB) []byte {
	t.Helper()
	a, b := net.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = tls.Client(a, &tls.Config{ServerName: "endpoint.test", MinVersion: tls.VersionTLS12}).Handshake()
	})
	defer func() { _ = a.Close(); _ = b.Close(); wg.Wait() }()
	hdr := make([]byte, recordHeaderLen)
	_, err := io.ReadFull(b, hdr)
	require.NoError(t, err)
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:5]))
	_, err = io.ReadFull(b, body)
	require.NoError(t, err)
	return append(hdr, body...)
}

// record frames payload as one TLS record of type typ.
func record(typ byte, payload []byte) []byte {
	out := []byte{typ, 3, 1, 0, 0}
	binary.BigEndian.PutUint16(out[3:5], uint16(len(payload)))
	return append(out, payload...)
}

func TestClientHelloPrefix(t *testing.T) {
	ch := clientHello(t)
	// The same ClientHello message split over two handshake records.
	msg := ch[recordHeaderLen:]
	split := append(record(recordHandshake, msg[:40]), record(recordHandshake, msg[40:])...)
	appData := record(23, []byte("0-RTT application data"))
	serverHello := record(recordHandshake, []byte{2, 0, 0, 1, 0})

	for _, tc := range []struct {
		name string
		in   []byte
		n    int
		done bool
	}{
		{"nothing yet", nil, 0, false},
		{"first byte only", ch[:1], 0, false},
		{"record header only", ch[:recordHeaderLen], 0, false},
		{"half a ClientHello", ch[:len(ch)/2], 0, false},
		{"whole ClientHello", ch, len(ch), true},
		{"ClientHello then 0-RTT data: the data waits", append(append([]byte{}, ch...), appData...), len(ch), true},
		{"ClientHello then a partial record", append(append([]byte{}, ch...), appData[:3]...), len(ch), true},
		{"split over two records, first only", split[:recordHeaderLen+40], recordHeaderLen + 40, false},
		{"split over two records, both", split, len(split), true},
		{"plain HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0, true},
		{"SSH banner", []byte("SSH-2.0-OpenSSH_9.2\r\n"), 0, true},
		{"handshake record that is not a ClientHello", serverHello, 0, true},
		{"application data record", appData, 0, true},
		{"bad major version", []byte{recordHandshake, 2, 1, 0, 10}, 0, true},
		{"unknown minor version", []byte{recordHandshake, 3, 9, 0, 10}, 0, true},
		{"empty record", []byte{recordHandshake, 3, 1, 0, 0}, 0, true},
		{"record above 2^14", []byte{recordHandshake, 3, 1, 0x40, 1, 1}, 0, true},
		{"record too short for a handshake header", record(recordHandshake, []byte{1, 0}), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, done := clientHelloPrefix(tc.in)
			require.Equal(t, tc.n, n)
			require.Equal(t, tc.done, done)
		})
	}
}

func FuzzClientHelloPrefix(f *testing.F) {
	f.Add(clientHello(f))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add(record(recordHandshake, []byte{1, 0, 0, 2, 3, 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, done := clientHelloPrefix(b)
		if n < 0 || n > len(b) {
			t.Fatalf("prefix %d of %d bytes", n, len(b))
		}
		if n > 0 && b[0] != recordHandshake {
			t.Fatalf("prefix %d of a non-handshake record", n)
		}
		// More bytes never shrink the prefix.
		n2, _ := clientHelloPrefix(append(append([]byte{}, b...), 0x16, 3, 3))
		if n2 < n {
			t.Fatalf("prefix shrank from %d to %d", n, n2)
		}
		_ = done
	})
}

func TestParseEarlyData(t *testing.T) {
	for _, m := range []EarlyData{EarlyOff, EarlyTLS, EarlyAlways} {
		got, err := ParseEarlyData(m.String())
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	_, err := ParseEarlyData("sometimes")
	require.ErrorContains(t, err, `"off", "tls" or "always"`)
}
