package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// maxBodyDrain is how much of a response body a probe reads before closing.
const maxBodyDrain = 4 << 10

// httpProber passes when a GET returns a status within [min, max].
type httpProber struct {
	scheme   string
	url      string
	host     string
	min, max int
	timeout  time.Duration
	client   *http.Client
}

var _ Prober = (*httpProber)(nil)

func newHTTPProber(cfg Config, secure bool) (*httpProber, error) {
	scheme := HTTP
	if secure {
		scheme = HTTPS
	}
	path := cfg.Path
	if path == "" {
		path = "/"
	}
	if err := CheckPath(path); err != nil {
		return nil, fmt.Errorf("%s: path: %w", scheme, err)
	}
	u, err := url.Parse(scheme + "://" + cfg.Address + path)
	if err != nil {
		return nil, fmt.Errorf("%s: bad address or path: %w", scheme, err)
	}
	lo, hi := cfg.StatusMin, cfg.StatusMax
	if lo == 0 && hi == 0 {
		lo, hi = 200, 399
	}
	if lo < 100 || hi > 599 || lo > hi {
		return nil, fmt.Errorf("%s: bad status range %d-%d", scheme, lo, hi)
	}
	tlsConf := &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // opt-in per config
	if cfg.Host != "" {
		name := cfg.Host
		if h, _, err := net.SplitHostPort(name); err == nil {
			name = h
		}
		tlsConf.ServerName = name
	}
	tr := &http.Transport{
		// Never send probes through an environment proxy: the probe must
		// reach the endpoint itself.
		Proxy:               nil,
		DialContext:         (&net.Dialer{}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: cfg.Timeout,
		DisableKeepAlives:   true,
		DisableCompression:  true,
	}
	return &httpProber{
		scheme:  scheme,
		url:     u.String(),
		host:    cfg.Host,
		min:     lo,
		max:     hi,
		timeout: cfg.Timeout,
		client: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}, nil
}

// Probe sends one GET on a fresh connection and checks the status.
func (p *httpProber) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", p.scheme, err)
	}
	if p.host != "" {
		req.Host = p.host
	}
	req.Header.Set("User-Agent", "anyedge-healthcheck")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", p.scheme, err)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxBodyDrain)
	_ = resp.Body.Close()
	if resp.StatusCode < p.min || resp.StatusCode > p.max {
		return fmt.Errorf("%s: status %d outside %d-%d", p.scheme, resp.StatusCode, p.min, p.max)
	}
	return nil
}
