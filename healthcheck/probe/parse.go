package probe

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// ParseStatusRange parses an accepted HTTP status range such as "200-399"
// or a single code such as "204". Empty means 200-399.
func ParseStatusRange(s string) (lo, hi int, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 200, 399, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err = strconv.Atoi(strings.TrimSpace(a))
	if err != nil {
		return 0, 0, fmt.Errorf("status range %q: %w", s, err)
	}
	hi = lo
	if isRange {
		hi, err = strconv.Atoi(strings.TrimSpace(b))
		if err != nil {
			return 0, 0, fmt.Errorf("status range %q: %w", s, err)
		}
	}
	if lo < 100 || hi > 599 || lo > hi {
		return 0, 0, fmt.Errorf("status range %q: want 100 <= low <= high <= 599", s)
	}
	return lo, hi, nil
}

// ParseDNSType parses a query type mnemonic such as "A" or "AAAA"
// (case-insensitive). Empty means A.
func ParseDNSType(s string) (uint16, error) {
	if s == "" {
		return dns.TypeA, nil
	}
	t, ok := dns.StringToType[strings.ToUpper(s)]
	if !ok {
		return 0, fmt.Errorf("unknown dns type %q", s)
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
		return 0, fmt.Errorf("unknown dns rcode %q", s)
	}
	return rc, nil
}
