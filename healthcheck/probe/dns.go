package probe

import (
	"context"
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// dnsProber passes when a query is answered with the expected rcode.
type dnsProber struct {
	addr    string
	name    string
	qtype   uint16
	rcode   int
	timeout time.Duration
}

var _ Prober = (*dnsProber)(nil)

func newDNSProber(cfg Config) (*dnsProber, error) {
	name := cfg.DNSName
	if name == "" {
		name = "."
	}
	if err := CheckDNSName(name); err != nil {
		return nil, fmt.Errorf("dns: name: %w", err)
	}
	qtype := cfg.DNSType
	if qtype == 0 {
		qtype = dns.TypeA
	}
	if _, ok := dns.RcodeToString[cfg.DNSRcode]; !ok {
		return nil, fmt.Errorf("dns: unknown rcode %d", cfg.DNSRcode)
	}
	return &dnsProber{
		addr:    cfg.Address,
		name:    dns.Fqdn(name),
		qtype:   qtype,
		rcode:   cfg.DNSRcode,
		timeout: cfg.Timeout,
	}, nil
}

// Probe sends one query over UDP, retries over TCP if the answer was
// truncated, and checks the response code.
func (p *dnsProber) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	m := new(dns.Msg).SetQuestion(p.name, p.qtype)
	c := &dns.Client{Net: "udp", Timeout: p.timeout}
	r, _, err := c.ExchangeContext(ctx, m, p.addr)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, p.addr)
	}
	if err != nil {
		return fmt.Errorf("dns: %s: %w", c.Net, err)
	}
	if r.Rcode != p.rcode {
		return fmt.Errorf("dns: rcode %s, want %s", rcodeName(r.Rcode), rcodeName(p.rcode))
	}
	return nil
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}
