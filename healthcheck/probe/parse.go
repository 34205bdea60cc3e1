package probe

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// The rules of a probe's configuration text. New applies them, and so does
// the config validator (with document paths), so that a document it accepts
// is one whose probes start. Errors say what is wrong without naming the
// field.

// CheckProtocol reports whether s names a probe: "tcp", "http", "https" or
// "dns".
func CheckProtocol(s string) error {
	switch s {
	case TCP, HTTP, HTTPS, DNS:
		return nil
	}
	return fmt.Errorf(`must be "tcp", "http", "https" or "dns", got %q`, s)
}

// CheckPath reports whether s can be the request path (and query) of an
// HTTP(S) probe: it starts with '/' and is a valid request URI.
func CheckPath(s string) error {
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("%q must start with /", s)
	}
	if _, err := url.ParseRequestURI(s); err != nil || strings.ContainsAny(s, " #") {
		return fmt.Errorf("%q is not a request path (escape spaces and '#' as %%20 and %%23)", s)
	}
	return nil
}

// ParseStatusRange parses an accepted HTTP status range such as "200-399"
// or a single code such as "204". Empty means 200-399.
func ParseStatusRange(s string) (lo, hi int, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 200, 399, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi = lo
	var err2 error
	if isRange {
		hi, err2 = strconv.Atoi(strings.TrimSpace(b))
	}
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf(`%q is not "N" or "N-M"`, s)
	case lo < 100 || hi > 599 || lo > hi:
		return 0, 0, fmt.Errorf("%q is not a range within 100–599", s)
	}
	return lo, hi, nil
}

// CheckDNSName reports whether s can be the name a DNS probe queries.
// Empty means ".".
func CheckDNSName(s string) error {
	if s == "" {
		return nil
	}
	if _, ok := dns.IsDomainName(s); !ok {
		return fmt.Errorf("%q is not a domain name", s)
	}
	return nil
}

// ParseDNSType parses a query type mnemonic such as "A" or "AAAA"
// (case-insensitive). Empty means A. Types that are no question (NONE,
// Reserved, OPT) are refused.
func ParseDNSType(s string) (uint16, error) {
	if s == "" {
		return dns.TypeA, nil
	}
	t, ok := dns.StringToType[strings.ToUpper(s)]
	if !ok || t == dns.TypeNone || t == dns.TypeReserved || t == dns.TypeOPT {
		return 0, fmt.Errorf("%q is not a DNS record type", s)
	}
	return t, nil
}

// ParseRcode parses a response code mnemonic such as "NOERROR" or
// "NXDOMAIN" (case-insensitive). Empty means NOERROR.
func ParseRcode(s string) (int, error) {
	if s == "" {
		return dns.RcodeSuccess, nil
	}
	rc, ok := dns.StringToRcode[strings.ToUpper(s)]
	if !ok {
		return 0, fmt.Errorf("%q is not a DNS response code", s)
	}
	return rc, nil
}
