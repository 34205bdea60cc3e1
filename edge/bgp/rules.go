package bgp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxASPathPrepend is the most extra copies of the local ASN a speaker
// prepends.
const MaxASPathPrepend = 10

// CheckASN reports why asn cannot be an AS number of a session: 0, AS_TRANS
// (23456) and the reserved 65535 and 4294967295.
func CheckASN(asn uint32) error {
	switch asn {
	case 0:
		return errors.New("0 is not a valid AS number")
	case 23456:
		return errors.New("23456 is AS_TRANS and cannot be used")
	case 65535, 4294967295:
		return fmt.Errorf("%d is a reserved AS number", asn)
	}
	return nil
}

// CheckHoldTime reports why d cannot be a hold time proposed in OPEN: it
// travels as whole seconds, at least 3 (RFC 4271 §4.2; 0, which turns
// keepalives off, is not offered) and at most 65535.
func CheckHoldTime(d time.Duration) error {
	switch {
	case d%time.Second != 0:
		return fmt.Errorf("%s is not a whole number of seconds", d)
	case d < 3*time.Second:
		return fmt.Errorf("%s is below 3s", d)
	case d > 65535*time.Second:
		return fmt.Errorf("%s is above 65535s", d)
	}
	return nil
}

// CheckKeepalive reports why d cannot be the keepalive interval of a
// session with hold time hold: whole seconds, at least 1s, below hold.
func CheckKeepalive(d, hold time.Duration) error {
	switch {
	case d%time.Second != 0:
		return fmt.Errorf("%s is not a whole number of seconds", d)
	case d < time.Second:
		return fmt.Errorf("%s is below 1s", d)
	case d >= hold:
		return fmt.Errorf("%s must be below hold_time %s", d, hold)
	}
	return nil
}

// ParseCommunity parses a standard community "a:b" (two 16-bit numbers)
// into a<<16 | b.
func ParseCommunity(s string) (uint32, error) {
	var v [2]uint32
	if !parseParts(s, v[:], 16) {
		return 0, fmt.Errorf(`%q is not "a:b" with 16-bit numbers`, s)
	}
	return v[0]<<16 | v[1], nil
}

// ParseLargeCommunity parses a large community "a:b:c" (three 32-bit
// numbers, RFC 8092).
func ParseLargeCommunity(s string) ([3]uint32, error) {
	var v [3]uint32
	if !parseParts(s, v[:], 32) {
		return v, fmt.Errorf(`%q is not "a:b:c" with 32-bit numbers`, s)
	}
	return v, nil
}

// parseParts fills out with the colon-separated decimal numbers of s, each
// of the given bit size.
func parseParts(s string, out []uint32, bits int) bool {
	fields := strings.Split(s, ":")
	if len(fields) != len(out) {
		return false
	}
	for i, f := range fields {
		n, err := strconv.ParseUint(f, 10, bits)
		if err != nil {
			return false
		}
		out[i] = uint32(n)
	}
	return true
}
