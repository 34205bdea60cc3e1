package dev

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/miekg/dns"
	proxyproto "github.com/pires/go-proxyproto"
	"golang.org/x/sync/errgroup"

	"github.com/anyedge/anyedge/control/config"
)

// startUDPDemos serves a small UDP demo on every endpoint address of a udp
// listener that is a loopback address with a port: a DNS query gets an
// answer (TXT: a greeting naming the endpoint and the client; A:
// 127.0.0.1), anything else is echoed back after the endpoint's name. A
// PROXY v2 header in front of a datagram (client_ip_preservation) is
// stripped and its source shown as the client.
func startUDPDemos(ctx context.Context, g *errgroup.Group, doc *config.Document, log *slog.Logger) ([]string, error) {
	var started []string
	var conns []*net.UDPConn
	for _, d := range loopbackEndpoints(doc, "udp") {
		e, ap := d.endpoint, d.addr
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, fmt.Errorf("demo endpoint %s: %w", e.ID, err)
		}
		conns = append(conns, c)
		g.Go(func() error { serveUDPDemo(c, e.ID); return nil })
		g.Go(func() error { <-ctx.Done(); return c.Close() })
		started = append(started, e.ID+" on udp "+e.Address)
		if log != nil {
			log.Info("demo endpoint serving", "endpoint", e.ID, "addr", e.Address, "protocol", "udp")
		}
	}
	return started, nil
}

// serveUDPDemo answers datagrams on c until c is closed.
func serveUDPDemo(c *net.UDPConn, id string) {
	buf := make([]byte, 1<<16)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if out := udpDemoReply(id, buf[:n], src); out != nil {
			_, _ = c.WriteToUDPAddrPort(out, src)
		}
	}
}

// proxyV2Sig opens every PROXY protocol v2 header.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// udpDemoReply is the demo's answer to one datagram p from src; nil when
// there is nothing to say.
func udpDemoReply(id string, p []byte, src netip.AddrPort) []byte {
	client := src.String()
	if bytes.HasPrefix(p, proxyV2Sig) {
		r := bufio.NewReaderSize(bytes.NewReader(p), len(p)+16)
		h, err := proxyproto.Read(r)
		if err != nil {
			return nil
		}
		if h.SourceAddr != nil {
			client = h.SourceAddr.String()
		}
		p = p[len(p)-r.Buffered():]
	}
	var q dns.Msg
	if err := q.Unpack(p); err == nil && !q.Response && len(q.Question) == 1 {
		m := new(dns.Msg)
		m.SetReply(&q)
		qq := q.Question[0]
		hdr := dns.RR_Header{Name: qq.Name, Class: dns.ClassINET, Rrtype: qq.Qtype, Ttl: 0}
		switch qq.Qtype {
		case dns.TypeTXT:
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr,
				Txt: []string{fmt.Sprintf("hello from %s through anyedge (client %s)", id, client)}})
		case dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)})
		}
		out, err := m.Pack()
		if err != nil {
			return nil
		}
		return out
	}
	return append([]byte(id+": "), p...)
}
