package edge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/tlsterm"
	"github.com/anyedge/anyedge/internal/needs"
	"github.com/anyedge/anyedge/internal/testcert"
)

// httpEndpoint is a plain HTTP/1.1 endpoint that answers every request
// with "path <path> from <remote address>"; with proxy set it first reads
// a PROXY protocol v2 header and reports its source address instead.
func httpEndpoint(t *testing.T, proxy bool) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	if proxy {
		ln = &proxyproto.Listener{Listener: ln, Policy: func(net.Addr) (proxyproto.Policy, error) {
			return proxyproto.REQUIRE, nil
		}}
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "path %s from %s", r.URL.Path, r.RemoteAddr)
	})}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	t.Cleanup(func() { _ = srv.Close(); wg.Wait() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// tlsLab runs an edge whose listener terminates TLS with the given pairs
// (ALPN http/1.1) in front of one region whose endpoint "web" is at ep,
// with PROXY protocol when proxy is set.
func tlsLab(t *testing.T, ep netip.AddrPort, proxy bool, pairs ...testcert.Issued) (port uint16, e *edge.Edge, term *tlsterm.Terminator) {
	t.Helper()
	return tlsLabWith(t, gateway.Endpoint{Host: ep.Addr().String(), Port: ep.Port(), ProxyProtocol: proxy}, pairs...)
}

// tlsLabWith is tlsLab with the endpoint given whole (ID and listener
// ports are set here).
func tlsLabWith(t *testing.T, gep gateway.Endpoint, pairs ...testcert.Issued) (port uint16, e *edge.Edge, term *tlsterm.Terminator) {
	t.Helper()
	port = freePort(t)
	var ps []tlsterm.Pair
	for _, p := range pairs {
		ps = append(ps, tlsterm.Pair{CertFile: p.CertFile, KeyFile: p.KeyFile})
	}
	term, err := tlsterm.New(tlsterm.Config{Certificates: ps, ALPN: []string{"http/1.1"}, CheckInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	gep.ID, gep.ListenerPorts = "web", [][2]uint16{{port, port}}
	gw := gateway.New(gateway.Config{Endpoints: []gateway.Endpoint{gep}})
	e, _ = startRegionsLab(t, port, edge.EarlyTLS, []labRegion{{name: "r", handler: gw, endpoints: []string{"web"}}},
		func(cfg *edge.Config) { cfg.Listeners[0].TLS = term })
	return port, e, term
}

// curl fetches url for name resolved to 127.0.0.1:port, trusting ca.
func curl(t *testing.T, ca *testcert.CA, name string, port uint16, path string) (string, error) {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "--max-time", "10", "--cacert", ca.File,
		"--resolve", fmt.Sprintf("%s:%d:127.0.0.1", name, port),
		fmt.Sprintf("https://%s:%d%s", name, port, path)).CombinedOutput()
	return string(out), err
}

// TestTLSAtEdgeCurl: curl, verifying the certificate against the CA,
// reaches a plain HTTP endpoint through a listener that terminates TLS,
// for each configured name; a name no certificate carries is refused.
func TestTLSAtEdgeCurl(t *testing.T) {
	needs.Tools(t, "curl", "curl")
	ca := testcert.NewCA(t)
	a := ca.Issue(t, "a", testcert.Leaf{Names: []string{"a.example.test"}})
	b := ca.Issue(t, "b", testcert.Leaf{Names: []string{"*.b.example.test"}})
	port, e, _ := tlsLab(t, httpEndpoint(t, false), false, a, b)
	for _, name := range []string{"a.example.test", "www.b.example.test"} {
		out, err := curl(t, ca, name, port, "/hello")
		require.NoError(t, err, out)
		require.True(t, strings.HasPrefix(out, "path /hello from 127.0.0.1:"), out)
	}
	out, err := curl(t, ca, "unknown.example.test", port, "/")
	require.Error(t, err)
	require.Contains(t, out, "unrecognized name", out)
	deadline := time.Now().Add(10 * time.Second)
	for e.Stats().Ended(flow.TLSFailed) == 0 {
		require.True(t, time.Now().Before(deadline), "the refused handshake was not counted")
		time.Sleep(time.Millisecond)
	}
}

// TestTLSAtEdgeOpenSSL: openssl s_client sees the certificate chosen by
// its -servername (verified against the CA), the alert unrecognized_name
// for an unknown one, and a rotated certificate without a restart.
func TestTLSAtEdgeOpenSSL(t *testing.T) {
	needs.Tools(t, "openssl", "openssl")
	ca := testcert.NewCA(t)
	a := ca.Issue(t, "a", testcert.Leaf{Names: []string{"a.example.test"}})
	b := ca.Issue(t, "b", testcert.Leaf{Names: []string{"b.example.test"}})
	port, _, term := tlsLab(t, httpEndpoint(t, false), false, a, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- term.Run(ctx) }() // the lab's edge runs it too: check serializes the two
	t.Cleanup(func() { cancel(); <-done })

	sClient := func(name string) (string, error) {
		cmd := exec.Command("openssl", "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", port),
			"-servername", name, "-CAfile", ca.File, "-verify_return_error", "-alpn", "http/1.1")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	serial := func(out string) int64 {
		blk, _ := pem.Decode([]byte(out[strings.Index(out, "-----BEGIN CERTIFICATE-----"):]))
		require.NotNil(t, blk, out)
		c, err := x509.ParseCertificate(blk.Bytes)
		require.NoError(t, err)
		return c.SerialNumber.Int64()
	}
	for name, want := range map[string]testcert.Issued{"a.example.test": a, "b.example.test": b} {
		out, err := sClient(name)
		require.NoError(t, err, out)
		require.Contains(t, out, "Verify return code: 0 (ok)")
		require.Contains(t, out, "ALPN protocol: http/1.1")
		require.Equal(t, want.Serial.Int64(), serial(out), name)
	}
	out, err := sClient("unknown.example.test")
	require.Error(t, err)
	require.Contains(t, out, "unrecognized name", out)

	rotated := ca.IssueTo(t, a.CertFile, a.KeyFile, testcert.Leaf{Names: []string{"a.example.test"}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := sClient("a.example.test")
		require.NoError(t, err, out)
		if serial(out) == rotated.Serial.Int64() {
			break
		}
		require.True(t, time.Now().Before(deadline), "the rotated certificate was never served")
	}
}

// TestTLSAtEdgeClientIP: behind a listener that terminates TLS, an
// endpoint that asks for the PROXY protocol still learns the client's
// address and port.
func TestTLSAtEdgeClientIP(t *testing.T) {
	ca := testcert.NewCA(t)
	a := ca.Issue(t, "a", testcert.Leaf{Names: []string{"a.example.test"}})
	port, _, _ := tlsLab(t, httpEndpoint(t, true), true, a)
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(freePort(t))}
	d := &net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.test"})
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "GET /who HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "path /who from "+local.String(), string(body))
}

// httpsEndpoint is an HTTPS endpoint with a certificate of ca for name,
// offering ALPN http/1.1, that answers with the server name and protocol
// its client's TLS asked for.
func httpsEndpoint(t *testing.T, ca *testcert.CA, name string) netip.AddrPort {
	t.Helper()
	cert := ca.Issue(t, "endpoint", testcert.Leaf{Names: []string{name}})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert.Cert}, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s %s", r.TLS.ServerName, r.TLS.NegotiatedProtocol)
	})}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	t.Cleanup(func() { _ = srv.Close(); wg.Wait() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// TestTLSAtEdgeReencrypt: the region dials the endpoint over TLS,
// verifying it against the endpoints' CA, with the client's SNI and the
// ALPN the client negotiated with the edge; an endpoint whose certificate
// the region cannot verify gets no flow.
func TestTLSAtEdgeReencrypt(t *testing.T) {
	edgeCA, endpointCA := testcert.NewCA(t), testcert.NewCA(t)
	a := edgeCA.Issue(t, "a", testcert.Leaf{Names: []string{"a.example.test"}})
	ep := httpsEndpoint(t, endpointCA, "a.example.test")
	get := func(port uint16) (string, error) {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: edgeCA.Pool(),
			ServerName: "a.example.test", NextProtos: []string{"http/1.1"}})
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	t.Run("verified", func(t *testing.T) {
		port, _, _ := tlsLabWith(t, gateway.Endpoint{Host: ep.Addr().String(), Port: ep.Port(),
			Reencrypt: &tls.Config{RootCAs: endpointCA.Pool(), ClientSessionCache: tls.NewLRUClientSessionCache(0)}}, a)
		body, err := get(port)
		require.NoError(t, err)
		require.Equal(t, "tls a.example.test http/1.1", body)
	})
	t.Run("unverifiable", func(t *testing.T) {
		port, e, _ := tlsLabWith(t, gateway.Endpoint{Host: ep.Addr().String(), Port: ep.Port(),
			Reencrypt: &tls.Config{RootCAs: edgeCA.Pool()}}, a)
		_, err := get(port)
		require.Error(t, err, "an endpoint the region cannot verify gets nothing")
		deadline := time.Now().Add(10 * time.Second)
		for failed(e) == 0 {
			require.True(t, time.Now().Before(deadline), "the flow was not counted failed")
			time.Sleep(time.Millisecond)
		}
	})
}

// TestTLSAtEdgeProxyTLVs: an endpoint that asks for the PROXY protocol
// learns, besides the client's address, what its TLS with the edge was:
// the ALPN protocol, the server name and the TLS version (TLVs).
func TestTLSAtEdgeProxyTLVs(t *testing.T) {
	ca := testcert.NewCA(t)
	a := ca.Issue(t, "a", testcert.Leaf{Names: []string{"a.example.test"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	seen := make(chan *proxyproto.Header, 1)
	serveEach(t, ln, func(c net.Conn) {
		r := bufio.NewReader(c)
		h, err := proxyproto.Read(r)
		if err != nil {
			return
		}
		seen <- h
		_, _ = http.ReadRequest(r)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	port, _, _ := tlsLab(t, netip.MustParseAddrPort(ln.Addr().String()), true, a)
	out := ""
	if _, err := exec.LookPath("curl"); err == nil {
		out, err = curl(t, ca, "a.example.test", port, "/")
		require.NoError(t, err, out)
		require.Equal(t, "ok", out)
	} else {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.test", NextProtos: []string{"http/1.1"}})
		require.NoError(t, err)
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n")
		_, err = http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
	}
	h := <-seen
	tlvs, err := h.TLVs()
	require.NoError(t, err)
	got := map[proxyproto.PP2Type]string{}
	for _, tlv := range tlvs {
		got[tlv.Type] = string(tlv.Value)
	}
	require.Equal(t, "http/1.1", got[proxyproto.PP2_TYPE_ALPN])
	require.Equal(t, "a.example.test", got[proxyproto.PP2_TYPE_AUTHORITY])
	ssl, ok := tlvparse.FindSSL(tlvs)
	require.True(t, ok)
	require.True(t, ssl.ClientSSL())
	v, _ := ssl.SSLVersion()
	require.Equal(t, "TLSv1.3", v)
	require.Equal(t, "127.0.0.1", h.SourceAddr.(*net.TCPAddr).IP.String())
}
