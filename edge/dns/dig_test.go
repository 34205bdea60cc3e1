package dns

import (
	"bufio"
	"context"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/internal/needs"
)

// testZone is a zone with two anycast accelerators, a steered one, two
// nameservers (one inside the zone, with glue) and two steering PoPs.
func testZoneConfig() ZoneConfig {
	return ZoneConfig{
		Origin: "accel.example.net",
		TTL:    300 * time.Second, NSTTL: time.Hour,
		SOA: SOA{MName: "ns1.accel.example.net", RName: "hostmaster.accel.example.net", Serial: 7,
			Refresh: time.Hour, Retry: 15 * time.Minute, Expire: 7 * 24 * time.Hour, Minimum: time.Minute},
		Nameservers: []Nameserver{
			{Name: "ns1.accel.example.net", Addrs: addrs("198.18.0.53", "2001:db8:53::1")},
			{Name: "ns.example.org"},
		},
		Names: []Name{
			{Name: "web", Accelerator: "web", Addrs: addrs("203.0.113.10", "203.0.113.11", "2001:db8::10")},
			{Name: "api.eu", Accelerator: "api", Addrs: addrs("203.0.113.20")},
			{Name: "game", Accelerator: "game", Steered: true},
		},
		Steering: Steering{
			TTL: 30 * time.Second,
			PoPs: []PoP{
				{Name: "pop-a", Addrs: addrs("198.18.1.1", "2001:db8:1::1")},
				{Name: "pop-b", Addrs: addrs("198.18.2.1")},
			},
			Clients: []ClientRule{
				{Prefix: netip.MustParsePrefix("198.18.10.0/24"), PoPs: []string{"pop-a", "pop-b"}},
				{Prefix: netip.MustParsePrefix("198.18.20.0/24"), PoPs: []string{"pop-b", "pop-a"}},
				{Prefix: netip.MustParsePrefix("198.18.20.128/25"), PoPs: []string{"pop-a"}},
			},
			CatchAll: []string{"pop-b", "pop-a"},
		},
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// startServer runs a server for c on 127.0.0.1.
func startServer(t *testing.T, c ZoneConfig, cfg Config) *Server {
	t.Helper()
	z, err := NewZone(c)
	require.NoError(t, err)
	if cfg.Listen == nil {
		cfg.Listen = []string{"127.0.0.1:0"}
	}
	if cfg.RRL.ResponsesPerSecond == 0 {
		cfg.RRL.ResponsesPerSecond = 100000
	}
	s, err := New(cfg, z)
	require.NoError(t, err)
	require.NoError(t, s.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		require.NoError(t, s.Close())
	})
	return s
}

func needDig(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		needs.Skip(t, "dig not installed (dnsutils; .ci/run installs it)")
	}
}

// digResult is what dig printed, parsed.
type digResult struct {
	out       string
	status    string
	flags     []string
	answer    []dns.RR
	authority []dns.RR
	extra     []dns.RR
	ednsUDP   int    // 0 without an OPT record in the answer
	subnet    string // "; CLIENT-SUBNET:" as printed
	retried   bool   // ";; Truncated, retrying in TCP mode."
}

func (r digResult) flag(f string) bool {
	for _, x := range r.flags {
		if x == f {
			return true
		}
	}
	return false
}

// answers returns the answer section's address records as strings.
func (r digResult) addrs() []string {
	var out []string
	for _, rr := range r.answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

// dig runs the real dig against s.
func dig(t *testing.T, s *Server, args ...string) digResult {
	t.Helper()
	ap := s.Addrs()[0]
	argv := append([]string{"@" + ap.Addr().String(), "-p", strconv.Itoa(int(ap.Port())), "+time=2", "+tries=1"}, args...)
	out, err := exec.Command("dig", argv...).CombinedOutput()
	require.NoError(t, err, "dig %v:\n%s", argv, out)
	r := digResult{out: string(out)}
	var section *[]dns.RR
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ";; ->>HEADER<<-"):
			_, rest, _ := strings.Cut(line, "status: ")
			r.status, _, _ = strings.Cut(rest, ",")
		case strings.HasPrefix(line, ";; flags:"):
			f, _, _ := strings.Cut(strings.TrimPrefix(line, ";; flags:"), ";")
			r.flags = strings.Fields(f)
		case strings.HasPrefix(line, "; EDNS:"):
			_, u, _ := strings.Cut(line, "udp: ")
			r.ednsUDP, _ = strconv.Atoi(strings.TrimSpace(u))
		case strings.HasPrefix(line, "; CLIENT-SUBNET:"):
			r.subnet = strings.TrimSpace(strings.TrimPrefix(line, "; CLIENT-SUBNET:"))
		case strings.HasPrefix(line, ";; Truncated, retrying in TCP mode"):
			r.retried = true
		case line == ";; ANSWER SECTION:":
			section = &r.answer
		case line == ";; AUTHORITY SECTION:":
			section = &r.authority
		case line == ";; ADDITIONAL SECTION:":
			section = &r.extra
		case line == "" || strings.HasPrefix(line, ";"):
			if line == "" {
				section = nil
			}
		case section != nil:
			rr, err := dns.NewRR(line)
			require.NoError(t, err, "dig printed %q", line)
			*section = append(*section, rr)
		}
	}
	return r
}

func types(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, dns.TypeToString[rr.Header().Rrtype])
	}
	return out
}

// TestDig asks the real dig every kind of question the zone answers.
func TestDig(t *testing.T) {
	needDig(t)
	s := startServer(t, testZoneConfig(), Config{})

	r := dig(t, s, "web.accel.example.net", "A")
	require.Equal(t, "NOERROR", r.status, r.out)
	require.True(t, r.flag("aa"), "authoritative: %s", r.out)
	require.False(t, r.flag("ra"), "no recursion: %s", r.out)
	require.ElementsMatch(t, []string{"203.0.113.10", "203.0.113.11"}, r.addrs())
	require.EqualValues(t, 300, r.answer[0].Header().Ttl)
	require.Equal(t, 1232, r.ednsUDP, "EDNS0 answered with our UDP size")

	r = dig(t, s, "WEB.Accel.Example.NET", "AAAA", "+norecurse")
	require.Equal(t, []string{"2001:db8::10"}, r.addrs(), "names are case-insensitive")
	require.False(t, r.flag("rd"), "RD copied from the query")

	r = dig(t, s, "accel.example.net", "SOA")
	require.Equal(t, []string{"SOA"}, types(r.answer))
	soa := r.answer[0].(*dns.SOA)
	require.Equal(t, "ns1.accel.example.net.", soa.Ns)
	require.EqualValues(t, 7, soa.Serial)
	require.EqualValues(t, 60, soa.Minttl)

	r = dig(t, s, "accel.example.net", "NS")
	require.Equal(t, []string{"NS", "NS"}, types(r.answer))
	require.ElementsMatch(t, []string{"A", "AAAA"}, types(r.extra), "glue of the in-zone nameserver: %s", r.out)
	r = dig(t, s, "ns1.accel.example.net", "A")
	require.Equal(t, []string{"198.18.0.53"}, r.addrs())

	r = dig(t, s, "nope.accel.example.net", "A")
	require.Equal(t, "NXDOMAIN", r.status)
	require.True(t, r.flag("aa"))
	require.Equal(t, []string{"SOA"}, types(r.authority), "NXDOMAIN carries the SOA")
	require.EqualValues(t, 60, r.authority[0].Header().Ttl, "negative TTL (RFC 2308)")

	r = dig(t, s, "eu.accel.example.net", "A")
	require.Equal(t, "NOERROR", r.status, "an empty non-terminal exists")
	require.Empty(t, r.answer)
	r = dig(t, s, "web.accel.example.net", "MX")
	require.Equal(t, "NOERROR", r.status)
	require.Empty(t, r.answer)
	require.Equal(t, []string{"SOA"}, types(r.authority), "no data carries the SOA")

	r = dig(t, s, "example.com", "A")
	require.Equal(t, "REFUSED", r.status, "outside the zone")
	require.False(t, r.flag("aa"))
	require.Empty(t, r.answer)
	r = dig(t, s, "xaccel.example.net", "A")
	require.Equal(t, "REFUSED", r.status, "a suffix that is not a label boundary")

	r = dig(t, s, "web.accel.example.net", "ANY")
	require.Equal(t, "NOERROR", r.status)
	require.Equal(t, []string{"A", "A"}, types(r.answer), "RFC 8482: one RRset")

	r = dig(t, s, "accel.example.net", "AXFR", "+tcp")
	require.Contains(t, r.out, "Transfer failed", "zone transfers are refused")

	r = dig(t, s, "web.accel.example.net", "A", "+noedns")
	require.Zero(t, r.ednsUDP, "no OPT without EDNS in the query")
	r = dig(t, s, "web.accel.example.net", "A", "+edns=1", "+noednsneg")
	require.Equal(t, "BADVERS", r.status)

	r = dig(t, s, "web.accel.example.net", "A", "+tcp")
	require.ElementsMatch(t, []string{"203.0.113.10", "203.0.113.11"}, r.addrs(), "over TCP")

	st := s.Stats()
	require.Positive(t, st.QueriesUDP)
	require.Positive(t, st.QueriesTCP)
	require.Positive(t, st.Responses["NXDOMAIN"])
	require.Positive(t, st.Responses["REFUSED"])
	require.Positive(t, st.Queries["SOA"])
}

// TestTruncation: an answer bigger than the client's UDP size goes out
// empty with TC set, and dig gets it whole by retrying over TCP.
func TestTruncation(t *testing.T) {
	needDig(t)
	c := testZoneConfig()
	var many []netip.Addr
	for i := range 80 {
		many = append(many, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)}))
	}
	c.Names = append(c.Names, Name{Name: "big", Accelerator: "big", Addrs: many})
	s := startServer(t, c, Config{})

	r := dig(t, s, "big.accel.example.net", "AAAA", "+notcp", "+ignore")
	require.True(t, r.flag("tc"), r.out)
	require.Empty(t, r.answer)
	require.Equal(t, 1232, r.ednsUDP)

	r = dig(t, s, "big.accel.example.net", "AAAA")
	require.True(t, r.retried, "dig retried over TCP: %s", r.out)
	require.Len(t, r.answer, 80)

	// A small answer fits 512 bytes without EDNS.
	r = dig(t, s, "web.accel.example.net", "A", "+noedns", "+notcp", "+ignore")
	require.False(t, r.flag("tc"))
	require.Len(t, r.answer, 2)
	require.EqualValues(t, 2, s.Stats().Truncated, "two truncated answers (one plain, one before dig's retry)")
}

// TestSteeringECS: two client subnets reach two PoPs; the scope says how
// far each answer holds; an unavailable PoP leaves the answers.
func TestSteeringECS(t *testing.T) {
	needDig(t)
	s := startServer(t, testZoneConfig(), Config{})

	r := dig(t, s, "game.accel.example.net", "A", "+subnet=198.18.10.0/24")
	require.Equal(t, []string{"198.18.1.1"}, r.addrs(), r.out)
	require.Equal(t, "198.18.10.0/24/24", r.subnet)
	require.EqualValues(t, 30, r.answer[0].Header().Ttl, "steered answers have the short TTL")

	r = dig(t, s, "game.accel.example.net", "A", "+subnet=198.18.20.0/25")
	require.Equal(t, []string{"198.18.2.1"}, r.addrs(), r.out)
	require.Equal(t, "198.18.20.0/25/25", r.subnet)

	// The /25 inside 198.18.20.0/24 goes elsewhere, so a /24 query cannot
	// be answered for the whole /24: the scope says /25.
	r = dig(t, s, "game.accel.example.net", "A", "+subnet=198.18.20.0/24")
	require.Equal(t, []string{"198.18.2.1"}, r.addrs())
	require.Equal(t, "198.18.20.0/24/25", r.subnet)
	r = dig(t, s, "game.accel.example.net", "A", "+subnet=198.18.20.200/32")
	require.Equal(t, []string{"198.18.1.1"}, r.addrs())
	require.Equal(t, "198.18.20.200/32/25", r.subnet)

	// A client in no prefix goes to the catch-all; the scope is as long
	// as needed to stay clear of every prefix (198.18.0.0/21 holds none; /20 would hold 198.18.10.0/24).
	r = dig(t, s, "game.accel.example.net", "A", "+subnet=198.18.0.0/16")
	require.Equal(t, []string{"198.18.2.1"}, r.addrs())
	require.Equal(t, "198.18.0.0/16/21", r.subnet)
	r = dig(t, s, "game.accel.example.net", "A", "+subnet=0.0.0.0/0")
	require.Equal(t, "0.0.0.0/0/0", r.subnet, "a resolver that hides the client gets scope 0")

	// Without ECS the resolver's own address (127.0.0.1) decides: catch-all.
	r = dig(t, s, "game.accel.example.net", "A")
	require.Equal(t, []string{"198.18.2.1"}, r.addrs())
	require.Empty(t, r.subnet)

	// AAAA: only pop-a has IPv6.
	r = dig(t, s, "game.accel.example.net", "AAAA", "+subnet=198.18.20.0/25")
	require.Equal(t, []string{"2001:db8:1::1"}, r.addrs())

	// Not steered: scope 0.
	r = dig(t, s, "web.accel.example.net", "A", "+subnet=198.18.10.0/24")
	require.Equal(t, "198.18.10.0/24/0", r.subnet)

	// pop-b stops being available: its clients move to pop-a.
	s.SetAvailability(Availability{"game": {"pop-a"}})
	r = dig(t, s, "game.accel.example.net", "A", "+subnet=198.18.20.0/25")
	require.Equal(t, []string{"198.18.1.1"}, r.addrs())
	// Nothing available: fail open to the configured order.
	s.SetAvailability(Availability{"game": nil})
	r = dig(t, s, "game.accel.example.net", "A", "+subnet=198.18.20.0/25")
	require.Equal(t, []string{"198.18.2.1"}, r.addrs())
}

// TestWildcardListen: a server bound to every address answers from the
// address it was asked on (dig rejects a reply from another source).
func TestWildcardListen(t *testing.T) {
	needDig(t)
	s := startServer(t, testZoneConfig(), Config{Listen: []string{":0"}})
	port := strconv.Itoa(int(s.Addrs()[0].Port()))
	for _, server := range []string{"127.0.0.1", "127.0.0.2", "::1"} {
		out, err := exec.Command("dig", "@"+server, "-p", port, "+time=2", "+tries=1", "+short",
			"web.accel.example.net", "A").CombinedOutput()
		if server == "::1" && err != nil && strings.Contains(string(out), "network unreachable") {
			continue // no IPv6 loopback here
		}
		require.NoError(t, err, "%s: %s", server, out)
		require.Equal(t, []string{"203.0.113.10", "203.0.113.11"}, strings.Fields(string(out)), "asked on %s", server)
	}
}
