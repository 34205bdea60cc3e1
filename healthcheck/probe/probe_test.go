package probe

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func mustNew(t *testing.T, cfg Config) Prober {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	p, err := New(cfg)
	require.NoError(t, err)
	return p
}

func TestNewInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no address", Config{}, "empty address"},
		{"bad protocol", Config{Protocol: "icmp", Address: "127.0.0.1:1"}, "unknown protocol"},
		{"negative timeout", Config{Address: "127.0.0.1:1", Timeout: -1}, "negative timeout"},
		{"bad status range", Config{Protocol: "http", Address: "127.0.0.1:1", StatusMin: 400, StatusMax: 200}, "bad status range"},
		{"bad dns rcode", Config{Protocol: "dns", Address: "127.0.0.1:1", DNSRcode: 4242}, "unknown rcode"},
		{"bad dns name", Config{Protocol: "dns", Address: "127.0.0.1:1", DNSName: "a..b"}, `"a..b" is not a domain name`},
		{"path without slash", Config{Protocol: "http", Address: "127.0.0.1:1", Path: "healthz"}, `"healthz" must start with /`},
		{"path with a bad escape", Config{Protocol: "http", Address: "127.0.0.1:1", Path: "/a%zz"}, "is not a request path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	p := mustNew(t, Config{Protocol: "tcp", Address: addr})
	ctx := t.Context()

	require.NoError(t, p.Probe(ctx))
	require.NoError(t, ln.Close())
	err = p.Probe(ctx)
	require.ErrorContains(t, err, "tcp: ")
	require.ErrorContains(t, err, "connection refused")
}

func TestHTTP(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	var gotHost, gotPath atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		gotPath.Store(r.URL.RequestURI())
		if !r.Close {
			t.Errorf("probe request does not ask to close the connection")
		}
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write([]byte(strings.Repeat("x", 64<<10)))
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	p := mustNew(t, Config{Protocol: "http", Address: addr, Path: "/healthz?deep=1", Host: "app.example"})
	ctx := t.Context()

	require.NoError(t, p.Probe(ctx))
	require.Equal(t, "app.example", gotHost.Load())
	require.Equal(t, "/healthz?deep=1", gotPath.Load())

	status.Store(http.StatusServiceUnavailable)
	require.EqualError(t, p.Probe(ctx), "http: status 503 outside 200-399")

	// A redirect is judged by its own status, not followed.
	status.Store(http.StatusFound)
	require.NoError(t, p.Probe(ctx))
	narrow := mustNew(t, Config{Protocol: "http", Address: addr, StatusMin: 200, StatusMax: 299})
	require.EqualError(t, narrow.Probe(ctx), "http: status 302 outside 200-299")

	// Default Host header is the address.
	status.Store(http.StatusOK)
	require.NoError(t, mustNew(t, Config{Protocol: "http", Address: addr}).Probe(ctx))
	require.Equal(t, addr, gotHost.Load())

	srv.Close()
	require.ErrorContains(t, p.Probe(ctx), "connection refused")
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	p := mustNew(t, Config{Protocol: "http", Address: strings.TrimPrefix(srv.URL, "http://"), Timeout: 50 * time.Millisecond})
	err := p.Probe(t.Context())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "http: ")
}

func TestHTTPS(t *testing.T) {
	var gotHost atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")
	ctx := t.Context()

	verified := mustNew(t, Config{Protocol: "https", Address: addr})
	err := verified.Probe(ctx)
	require.ErrorContains(t, err, "https: ")
	require.ErrorContains(t, err, "certificate signed by unknown authority")

	insecure := mustNew(t, Config{Protocol: "https", Address: addr, Host: "example.com", InsecureSkipVerify: true})
	require.NoError(t, insecure.Probe(ctx))
	require.Equal(t, "example.com", gotHost.Load())
}

// dnsServer serves rcode for every query on 127.0.0.1 over UDP and TCP.
// When truncate is set, UDP answers carry the TC bit and only TCP answers
// tell the real rcode.
func dnsServer(t *testing.T, rcode *atomic.Int32, truncate bool) string {
	t.Helper()
	// The UDP port the kernel picks may be taken for TCP by another test
	// process: pick again until both bind.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		_ = pc.Close()
		require.Less(t, attempt, 20, "no port free for both UDP and TCP: %v", err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg).SetRcode(q, int(rcode.Load()))
		if truncate && w.LocalAddr().Network() == "udp" {
			m.Rcode = dns.RcodeRefused
			m.Truncated = true
		}
		_ = w.WriteMsg(m)
	})
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() { done <- s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() {
			_ = s.Shutdown()
			<-done
		})
	}
	return pc.LocalAddr().String()
}

func TestDNS(t *testing.T) {
	var rcode atomic.Int32
	addr := dnsServer(t, &rcode, false)
	ctx := t.Context()
	p := mustNew(t, Config{Protocol: "dns", Address: addr, DNSName: "example.com", DNSType: dns.TypeAAAA})

	require.NoError(t, p.Probe(ctx))
	rcode.Store(dns.RcodeServerFailure)
	require.EqualError(t, p.Probe(ctx), "dns: rcode SERVFAIL, want NOERROR")

	rcode.Store(dns.RcodeNameError)
	nx := mustNew(t, Config{Protocol: "dns", Address: addr, DNSRcode: dns.RcodeNameError})
	require.NoError(t, nx.Probe(ctx))
}

func TestDNSTruncatedFallsBackToTCP(t *testing.T) {
	var rcode atomic.Int32
	addr := dnsServer(t, &rcode, true)
	p := mustNew(t, Config{Protocol: "dns", Address: addr})
	require.NoError(t, p.Probe(t.Context()))
}

func TestDNSNoServer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := pc.LocalAddr().String()
	require.NoError(t, pc.Close())
	p := mustNew(t, Config{Protocol: "dns", Address: addr, Timeout: 200 * time.Millisecond})
	require.ErrorContains(t, p.Probe(t.Context()), "dns: udp: ")
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi int
		ok     bool
	}{
		{"", 200, 399, true},
		{"200-399", 200, 399, true},
		{" 204 ", 204, 204, true},
		{"200 - 299", 200, 299, true},
		{"399-200", 0, 0, false},
		{"99", 0, 0, false},
		{"200-600", 0, 0, false},
		{"abc", 0, 0, false},
		{"200-", 0, 0, false},
	} {
		lo, hi, err := ParseStatusRange(tc.in)
		if !tc.ok {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, [2]int{tc.lo, tc.hi}, [2]int{lo, hi}, tc.in)
	}

	typ, err := ParseDNSType("aaaa")
	require.NoError(t, err)
	require.Equal(t, dns.TypeAAAA, typ)
	typ, err = ParseDNSType("")
	require.NoError(t, err)
	require.Equal(t, dns.TypeA, typ)
	_, err = ParseDNSType("BOGUS")
	require.Error(t, err)
	_, err = ParseDNSType("OPT")
	require.Error(t, err, "not a question")

	require.NoError(t, CheckProtocol("https"))
	require.Error(t, CheckProtocol("HTTP"), "exact")
	require.NoError(t, CheckPath("/healthz?deep=1&x=%20"))
	require.Error(t, CheckPath("/a b"))
	require.NoError(t, CheckDNSName("health.example."))
	require.NoError(t, CheckDNSName(""))

	rc, err := ParseRcode("nxdomain")
	require.NoError(t, err)
	require.Equal(t, dns.RcodeNameError, rc)
	rc, err = ParseRcode("")
	require.NoError(t, err)
	require.Equal(t, dns.RcodeSuccess, rc)
	_, err = ParseRcode("NOPE")
	require.Error(t, err)
}

func FuzzParseStatusRange(f *testing.F) {
	for _, s := range []string{"", "200-399", "204", "x-y", "-1", "599-100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParseStatusRange(s)
		if err != nil {
			return
		}
		if lo < 100 || hi > 599 || lo > hi {
			t.Fatalf("ParseStatusRange(%q) = %d, %d: out of bounds", s, lo, hi)
		}
	})
}
