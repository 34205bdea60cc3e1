// Package probe provides the active health probes a region runs against its
// own endpoints: a TCP connect, an HTTP or HTTPS GET with an accepted status
// range, and a DNS query with an expected response code.
//
// A Prober is cheap to call repeatedly and safe for concurrent use. Every
// probe opens a fresh connection and closes it before returning, so a probe
// result never depends on a connection a previous probe left open.
package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Protocols understood by New.
const (
	TCP   = "tcp"
	HTTP  = "http"
	HTTPS = "https"
	DNS   = "dns"
)

// DefaultTimeout bounds a probe whose Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Config describes one probe. Zero values take the defaults named on each
// field.
type Config struct {
	// Protocol is "tcp", "http", "https" or "dns"; empty means "tcp".
	Protocol string
	// Address is the host:port probed. Required.
	Address string
	// Path is the request path (and optional query) of HTTP(S) probes;
	// empty means "/".
	Path string
	// Host is the Host header of HTTP(S) probes and, for HTTPS, the TLS
	// server name verified against the certificate; empty means Address.
	Host string
	// StatusMin and StatusMax bound the accepted HTTP status, inclusive;
	// both zero means 200-399. Redirects are not followed: a 3xx status is
	// judged like any other.
	StatusMin, StatusMax int
	// InsecureSkipVerify turns off certificate verification of HTTPS
	// probes. Verification is on by default.
	InsecureSkipVerify bool
	// DNSName is the name queried by DNS probes; empty means ".".
	DNSName string
	// DNSType is the query type (a dns.Type* value); zero means A.
	DNSType uint16
	// DNSRcode is the expected response code (a dns.Rcode* value); the
	// zero value is NOERROR.
	DNSRcode int
	// Timeout bounds one probe, connection set-up included; zero means
	// DefaultTimeout.
	Timeout time.Duration
}

// Prober runs one health probe. A nil error means the endpoint passed;
// otherwise the error says what failed.
type Prober interface {
	Probe(ctx context.Context) error
}

// New returns the Prober that cfg describes, or an error if cfg is invalid.
func New(cfg Config) (Prober, error) {
	if cfg.Address == "" {
		return nil, errors.New("probe: empty address")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("probe: negative timeout %v", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch strings.ToLower(cfg.Protocol) {
	case "", TCP:
		return &tcpProber{addr: cfg.Address, timeout: cfg.Timeout}, nil
	case HTTP:
		return newHTTPProber(cfg, false)
	case HTTPS:
		return newHTTPProber(cfg, true)
	case DNS:
		return newDNSProber(cfg)
	default:
		return nil, fmt.Errorf("probe: unknown protocol %q", cfg.Protocol)
	}
}
