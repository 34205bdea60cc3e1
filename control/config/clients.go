package config

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// ClientLists returns a listener's allow and deny prefixes: the inline
// lists, then the files' (see Listener.Allow). The error names the key and
// entry, or the file and line, of the first bad one; Validate reports all.
func (l *Listener) ClientLists() (allow, deny []netip.Prefix, err error) {
	var first error
	report := func(key, msg string) {
		if first == nil {
			first = fmt.Errorf("%s: %s", key, msg)
		}
	}
	allow = clientList(l.Allow, l.AllowFile, "allow", report)
	deny = clientList(l.Deny, l.DenyFile, "deny", report)
	return allow, deny, first
}

// Files lists the files the document names besides itself (listeners'
// allow_file and deny_file), each once, in document order: their contents
// are part of the configuration, so a source watches them too.
func (d *Document) Files() []string {
	var out []string
	for _, a := range d.Accelerators {
		for _, l := range a.Listeners {
			for _, f := range []string{l.AllowFile, l.DenyFile} {
				if f != "" && !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// MaxClientListLen bounds the prefixes of one allow or deny list (inline
// and file together).
const MaxClientListLen = 1 << 20

// clientList parses the inline entries of key and the file of key_file,
// telling report (key path, message) of each bad entry.
func clientList(inline []string, file, key string, report func(key, msg string)) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range inline {
		p, msg := parseClientPrefix(s)
		if msg != "" {
			report(fmt.Sprintf("%s[%d]", key, i), msg)
			continue
		}
		out = append(out, p)
	}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			report(key+"_file", err.Error())
			return out
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line, _, _ := strings.Cut(sc.Text(), "#")
			if line = strings.TrimSpace(line); line == "" {
				continue
			}
			p, msg := parseClientPrefix(line)
			if msg != "" {
				report(key+"_file", fmt.Sprintf("%s line %d: %s", file, n, msg))
				continue
			}
			out = append(out, p)
		}
		if err := sc.Err(); err != nil {
			report(key+"_file", fmt.Sprintf("%s: %v", file, err))
		}
	}
	if len(out) > MaxClientListLen {
		report(key, fmt.Sprintf("%d prefixes, more than %d", len(out), MaxClientListLen))
	}
	return out
}

// parseClientPrefix parses a CIDR prefix or a bare address (one host);
// the message says what is wrong.
func parseClientPrefix(s string) (netip.Prefix, string) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Sprintf("%q is not a prefix or an address", s)
		}
		s = netip.PrefixFrom(a, a.BitLen()).String()
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return p, fmt.Sprintf("%q is not a prefix or an address", s)
	case p.Addr().Is4In6():
		return p, fmt.Sprintf("%s is IPv4-mapped; write it as an IPv4 prefix", s)
	case p.Masked() != p:
		return p, fmt.Sprintf("%s has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, ""
}

// clients checks a listener's allow and deny lists and its limits.
func (v *validator) clients(p string, l *Listener) {
	clientList(l.Allow, l.AllowFile, "allow", func(key, msg string) { v.add(p+"."+key, "%s", msg) })
	clientList(l.Deny, l.DenyFile, "deny", func(key, msg string) { v.add(p+"."+key, "%s", msg) })
	lim := l.Limits
	lp := p + ".limits"
	v.flowCaps(lp, "max_flows", lim.MaxFlows, "max_flows_per_source", lim.MaxFlowsPerSource)
	if lim.NewFlowsPerSecond < 0 || lim.NewFlowsPerSecond > 1e9 {
		v.add(lp+".new_flows_per_second", "%v is outside 0–1e9", lim.NewFlowsPerSecond)
	}
	switch {
	case lim.NewFlowsBurst < 0 || lim.NewFlowsBurst > 1e9:
		v.add(lp+".new_flows_burst", "%d is outside 0–1000000000", lim.NewFlowsBurst)
	case lim.NewFlowsBurst > 0 && lim.NewFlowsPerSecond == 0:
		v.add(lp+".new_flows_burst", "needs new_flows_per_second")
	}
}

// popLimits checks an edge's process-wide limits.
func (v *validator) popLimits(p string, l PoPLimits) {
	if l.MaxConnections < 0 {
		v.add(p+".max_connections", "%d is negative", l.MaxConnections)
	}
	if l.RateBuckets < 1 || l.RateBuckets > 1<<24 {
		v.add(p+".rate_buckets", "%d is outside 1–16777216", l.RateBuckets)
	}
}

// regionLimits checks a region's caps on flows.
func (v *validator) regionLimits(p string, l RegionLimits) {
	v.flowCaps(p, "max_flows", l.MaxFlows, "max_flows_per_edge", l.MaxFlowsPerEdge)
}

// flowCaps checks a cap on flows (0: none) and a narrower one (per source,
// per edge): neither negative, the narrower not above the wider.
func (v *validator) flowCaps(p, wideKey string, wide int, narrowKey string, narrow int) {
	if wide < 0 {
		v.add(p+"."+wideKey, "%d is negative", wide)
	}
	switch {
	case narrow < 0:
		v.add(p+"."+narrowKey, "%d is negative", narrow)
	case wide > 0 && narrow > wide:
		v.add(p+"."+narrowKey, "%d is above %s %d", narrow, wideKey, wide)
	}
}
