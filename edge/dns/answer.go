package dns

import (
	"hash/maphash"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// RRL kinds of answers that are not keyed by name: every NXDOMAIN of the
// zone shares one account per client prefix, and so does every error, as
// in BIND.
const (
	kindNXDomain uint64 = 1
	kindError    uint64 = 2
)

// answer is one response being built, with what the transport needs to
// finish it.
type answer struct {
	msg     *dns.Msg
	kind    uint64 // RRL account
	maxSize int    // largest UDP answer the client takes
	qtype   int    // index for counters
}

// respond builds the answer to req from client src. It never fails: every
// request that parsed gets an answer (the UDP path may still drop it).
func (s *Server) respond(req *dns.Msg, src netip.Addr, tcp bool) answer {
	st := s.state.Load()
	resp := &dns.Msg{}
	resp.SetReply(req)
	resp.RecursionAvailable = false
	a := answer{msg: resp, kind: kindError, maxSize: dns.MinMsgSize}
	if len(req.Question) > 0 {
		a.qtype = qtypeIndex(req.Question[0].Qtype)
	}
	if tcp {
		a.maxSize = dns.MaxMsgSize
	}

	var ecs *dns.EDNS0_SUBNET
	if opt := req.IsEdns0(); opt != nil {
		out := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		out.SetUDPSize(uint16(s.udpSize))
		resp.Extra = append(resp.Extra, out)
		if opt.Version() != 0 {
			resp.Rcode = dns.RcodeBadVers
			return a
		}
		if !tcp {
			a.maxSize = max(dns.MinMsgSize, min(int(opt.UDPSize()), s.udpSize))
		}
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				ecs = e
			}
		}
		if ecs != nil {
			if ecs.SourceScope != 0 {
				resp.Rcode = dns.RcodeFormatError
				return a
			}
			reply := *ecs
			out.Option = append(out.Option, &reply)
			ecs = &reply
		}
	}
	switch {
	case req.Opcode != dns.OpcodeQuery:
		resp.Rcode = dns.RcodeNotImplemented
		return a
	case len(req.Question) != 1:
		resp.Rcode = dns.RcodeFormatError
		return a
	}
	q := req.Question[0]
	z := st.zone
	name := strings.ToLower(q.Name)
	inZone := name == z.origin || strings.HasSuffix(name, z.origin) && strings.HasSuffix(name[:len(name)-len(z.origin)], ".")
	if !inZone || q.Qclass != dns.ClassINET || q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		resp.Rcode = dns.RcodeRefused
		return a
	}
	resp.Authoritative = true
	n := z.names[name]
	if n == nil {
		resp.Rcode = dns.RcodeNameError
		resp.Ns = z.negSOA
		a.kind = kindNXDomain
		return a
	}
	a.kind = maphash.String(s.seed, name) ^ uint64(q.Qtype)*0x9E3779B97F4A7C15 | 3
	qtype := q.Qtype
	if qtype == dns.TypeANY { // RFC 8482: one RRset is enough
		switch {
		case n.steered || len(n.a) > 0:
			qtype = dns.TypeA
		case len(n.aaaa) > 0:
			qtype = dns.TypeAAAA
		case name == z.origin:
			qtype = dns.TypeSOA
		}
	}
	switch {
	case n.steered && (qtype == dns.TypeA || qtype == dns.TypeAAAA):
		resp.Answer = s.steer(st, n, src, qtype == dns.TypeAAAA, ecs)
	case qtype == dns.TypeA:
		resp.Answer = n.a
	case qtype == dns.TypeAAAA:
		resp.Answer = n.aaaa
	case qtype == dns.TypeSOA && name == z.origin:
		resp.Answer = []dns.RR{z.soa}
	case qtype == dns.TypeNS && name == z.origin:
		resp.Answer = z.ns
		resp.Extra = append(z.glue[:len(z.glue):len(z.glue)], resp.Extra...)
	}
	if len(resp.Answer) == 0 {
		resp.Ns = z.negSOA
	}
	return a
}

// steer answers a steered name: the chosen PoP's addresses of one family.
// With EDNS Client Subnet the client is the subnet, and the reply's scope
// says for which prefix the choice holds.
func (s *Server) steer(st *state, n *node, src netip.Addr, v6 bool, ecs *dns.EDNS0_SUBNET) []dns.RR {
	t := &st.zone.steer
	client, srcBits := src.Unmap(), src.Unmap().BitLen()
	if ecs != nil && ecs.Family != 0 && ecs.SourceNetmask > 0 {
		ip := ecs.Address
		if ecs.Family == 1 {
			ip = ip.To4()
		}
		if ad, ok := netip.AddrFromSlice(ip); ok {
			if p, err := ad.Prefix(int(ecs.SourceNetmask)); err == nil {
				client, srcBits = p.Addr(), int(ecs.SourceNetmask)
			}
		}
	}
	rule, scope := t.match(client, srcBits)
	if ecs != nil {
		if ecs.Family == 0 || ecs.SourceNetmask == 0 {
			scope = 0
		}
		ecs.SourceScope = uint8(scope)
	}
	i := t.choose(rule, st.avail[n.accelerator], v6)
	if i < 0 {
		return nil
	}
	name := n.owner
	addrs := t.pops[i].v4
	if v6 {
		addrs = t.pops[i].v6
	}
	rrs := make([]dns.RR, 0, len(addrs))
	for _, ad := range addrs {
		rrs = append(rrs, addressRR(name, ad, t.ttl))
	}
	return rrs
}

// remoteAddr is the client address of a miekg/dns response writer.
func remoteAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
