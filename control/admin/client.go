package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxBody bounds what a client reads of one answer.
const maxBody = 4 << 20

// Client calls one node's admin API: plain HTTP on a loopback address, or
// HTTPS with an operator certificate on a remote one. Its methods are safe
// for concurrent use; Close releases its idle connections.
type Client struct {
	base string
	hc   *http.Client
}

// NewClient returns a client of the API at addr (host:port). With a TLS
// configuration (pki.OperatorClient.TLSConfig) it speaks HTTPS; without,
// plain HTTP.
func NewClient(addr string, tlsConfig *tls.Config) *Client {
	tr := &http.Transport{
		TLSClientConfig:     tlsConfig,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}
	scheme := "http://"
	if tlsConfig != nil {
		scheme = "https://"
	}
	return &Client{base: scheme + addr, hc: &http.Client{Transport: tr}}
}

// Close closes the client's idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Get fetches path (such as "/status") and returns the body of a 2xx answer.
func (c *Client) Get(ctx context.Context, path string) ([]byte, error) {
	return c.do(ctx, http.MethodGet, path)
}

// Call sends one command (status, ready, drain, undrain) and returns the
// body of the answer.
func (c *Client) Call(ctx context.Context, command string) (string, error) {
	method, path := http.MethodGet, "/status"
	switch command {
	case "status":
	case "ready":
		path = "/readyz"
	case "drain", "undrain":
		method, path = http.MethodPost, "/"+command
	default:
		return "", fmt.Errorf("unknown command %q (status, ready, drain, undrain)", command)
	}
	b, err := c.do(ctx, method, path)
	return string(b), err
}

// Post sends body as JSON to path and returns the body of a 2xx answer.
func (c *Client) Post(ctx context.Context, path string, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return c.send(ctx, http.MethodPost, path, bytes.NewReader(b))
}

func (c *Client) do(ctx context.Context, method, path string) ([]byte, error) {
	return c.send(ctx, method, path, nil)
}

func (c *Client) send(ctx context.Context, method, path string, body io.Reader) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", c.addr(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode/100 != 2 {
		return b, fmt.Errorf("admin API at %s: %s: %s", c.addr(), resp.Status, strings.TrimSpace(string(b)))
	}
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", c.addr(), err)
	}
	return b, nil
}

func (c *Client) addr() string {
	_, a, _ := strings.Cut(c.base, "://")
	return a
}

// Call sends one command to the plain-HTTP admin API at addr; see
// Client.Call.
func Call(ctx context.Context, addr, command string) (string, error) {
	c := NewClient(addr, nil)
	defer c.Close()
	return c.Call(ctx, command)
}
