package node

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/edge/router"
	"github.com/anyedge/anyedge/internal/testcert"
)

func TestSplitAddress(t *testing.T) {
	for in, want := range map[string]struct {
		host string
		port uint16
		err  bool
	}{
		"198.18.0.1":        {"198.18.0.1", 0, false},
		"198.18.0.1:8080":   {"198.18.0.1", 8080, false},
		"2001:db8::1":       {"2001:db8::1", 0, false},
		"[2001:db8::1]:443": {"2001:db8::1", 443, false},
		"web.internal":      {"web.internal", 0, false},
		"web.internal:81":   {"web.internal", 81, false},
		"198.18.0.1:99999":  {"", 0, true},
		"[2001:db8::1:443":  {"", 0, true},
	} {
		h, p, err := splitAddress(in)
		if want.err {
			require.Error(t, err, in)
			continue
		}
		require.NoError(t, err, in)
		require.Equal(t, want.host, h, in)
		require.Equal(t, want.port, p, in)
	}
}

const mapDoc = `
accelerators:
  - name: acc
    ip_addresses: [203.0.113.10]
    listeners:
      - protocol: tcp
        port_ranges: [{from: 80, to: 81}]
        client_affinity: source_ip
        endpoint_groups:
          - region: r1
            traffic_dial: 0
            health_check: {protocol: http, path: /hc, port: 9000}
            port_overrides: [{listener_port: 80, endpoint_port: 8080}]
            endpoints:
              - {id: a, address: "198.18.0.1", weight: 0, client_ip_preservation: true}
              - {id: b, address: "198.18.0.2:7000"}
          - region: r2
            endpoints: [{id: c, address: "198.18.1.1"}]
topology:
  pops: [{name: p1}]
  regions:
    - {name: r1, backbone: {listen: "127.0.0.1:7001"}}
    - {name: r2, backbone: {listen: "127.0.0.1:7002"}}
`

// TestMapping: the document reaches the edge's routing tables and the
// region's endpoint table with every field in place.
func TestMapping(t *testing.T) {
	doc, err := config.Load([]byte(mapDoc), config.LoadOptions{Env: []string{}})
	require.NoError(t, err)

	ls, err := edgeListeners(doc, "p1", nil)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	l := ls[0]
	require.Equal(t, router.AffinitySourceIP, l.Route.Affinity)
	require.Equal(t, 0, l.Route.Groups[0].TrafficDial, "an explicit dial of 0 stays 0")
	require.Equal(t, 100, l.Route.Groups[1].TrafficDial, "dial defaults to 100")
	require.Equal(t, uint8(0), l.Route.Groups[0].Endpoints[0].Weight, "an explicit weight of 0 drains")
	require.Equal(t, uint8(128), l.Route.Groups[0].Endpoints[1].Weight)

	eps, targets, err := regionParts(doc, "r1")
	require.NoError(t, err)
	require.Len(t, eps, 2)
	a, b := eps[0], eps[1]
	require.True(t, a.ProxyProtocol)
	addr, ok := a.Target(80)
	require.True(t, ok)
	require.Equal(t, "198.18.0.1:8080", addr, "port override")
	addr, ok = a.Target(81)
	require.True(t, ok)
	require.Equal(t, "198.18.0.1:81", addr, "listener port")
	_, ok = a.Target(82)
	require.False(t, ok, "a port outside the listener is refused")
	addr, _ = b.Target(80)
	require.Equal(t, "198.18.0.2:7000", addr, "an address with a port always uses it")
	require.Equal(t, "198.18.0.1:9000", targets[0].Probe.Address, "health_check.port wins")
	require.Equal(t, "http", targets[0].Probe.Protocol)
	require.Equal(t, "/hc", targets[0].Probe.Path)

	eps, _, err = regionParts(doc, "r2")
	require.NoError(t, err)
	require.Len(t, eps, 1)
	require.Equal(t, "c", eps[0].ID)
	require.Len(t, usedRegions(doc), 2)
}

// TestTLSListenerMapping: a listener with a tls section gets a terminator
// loaded from its files; an expired certificate or a key every user can
// read stops the edge with an error naming the document path and the file.
func TestTLSListenerMapping(t *testing.T) {
	ca := testcert.NewCA(t)
	good := ca.Issue(t, "good", testcert.Leaf{Names: []string{"www.example.test"}})
	expired := ca.Issue(t, "expired", testcert.Leaf{Names: []string{"www.example.test"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	open := ca.Issue(t, "open", testcert.Leaf{Names: []string{"www.example.test"}})
	require.NoError(t, os.Chmod(open.KeyFile, 0o644))
	doc := func(p testcert.Issued) *config.Document {
		d, err := config.Load(fmt.Appendf(nil, `
accelerators:
  - name: acc
    ip_addresses: [203.0.113.10]
    listeners:
      - protocol: tcp
        port_ranges: [{from: 443}]
        tls:
          certificates: [{cert_file: %q, key_file: %q}]
          alpn: [h2, http/1.1]
        endpoint_groups:
          - region: r1
            endpoints: [{id: a, address: "198.18.0.1:8080"}]
topology:
  pops: [{name: p1}]
  regions: [{name: r1, backbone: {listen: "127.0.0.1:7001"}}]
`, p.CertFile, p.KeyFile), config.LoadOptions{Env: []string{}})
		require.NoError(t, err)
		return d
	}
	ls, err := edgeListeners(doc(good), "p1", nil)
	require.NoError(t, err)
	require.NotNil(t, ls[0].TLS)

	_, err = edgeListeners(doc(expired), "p1", nil)
	require.ErrorContains(t, err, "accelerators[0].listeners[0].tls: tls certificate "+expired.CertFile+" expired on")
	_, err = edgeListeners(doc(open), "p1", nil)
	require.ErrorContains(t, err, "accelerators[0].listeners[0].tls: tls key "+open.KeyFile+" is readable by every user")
}
