//go:build linux

package main

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/cmd/anyedge/internal/netlab"
)

// zonesDoc is the anycast lab's fleet with two network zones: the
// accelerator's address 203.0.113.10 (prefix 203.0.113.0/25) is in zone
// a, served by edge1 alone; 203.0.113.138 (203.0.113.128/25) in zone b,
// served by edge2 alone.
const zonesDoc = `accelerators:
  - name: lab
    ip_addresses: [203.0.113.10, 203.0.113.138]
    prefixes: [203.0.113.0/25, 203.0.113.128/25]
    zones:
      - {name: a, ip_addresses: [203.0.113.10]}
      - {name: b, ip_addresses: [203.0.113.138]}
    listeners:
      - protocol: tcp
        port_ranges: [{from: 8080}]
        endpoint_groups:
          - region: region
            health_check: {protocol: tcp, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2}
            endpoints: [{id: echo, address: "198.18.9.1:7001"}]
topology:
  pki_dir: {{.PKI}}
  regions:
    - name: region
      admin: 127.0.0.1:9181
      backbone: {listen: "198.18.9.1:7000"}
  pops:
    - name: edge1
      zones: [a]
      admin: 127.0.0.1:9180
      bgp:
        local_asn: 64511
        router_id: 198.18.2.2
        hold_down: 1s
        manage_addresses: true
        neighbors: [{address: 198.18.2.1, peer_asn: 65000, hold_time: 3s, keepalive: 1s}]
    - name: edge2
      zones: [b]
      admin: 127.0.0.1:9180
      bgp:
        local_asn: 64512
        router_id: 198.18.3.2
        hold_down: 1s
        manage_addresses: true
        neighbors: [{address: 198.18.3.1, peer_asn: 65000, hold_time: 3s, keepalive: 1s}]
`

const (
	zoneAPrefix = "203.0.113.0/25"
	zoneBPrefix = "203.0.113.128/25"
	zoneAAddr   = "203.0.113.10:8080"
	zoneBAddr   = "203.0.113.138:8080"
)

// TestZonesLab: two network zones behind BIRD. Each edge listens on and
// announces only its zone's address; killing every PoP of zone a
// (edge1) withdraws zone a's prefix and leaves the zone-b address
// answering.
func TestZonesLab(t *testing.T) {
	lab := netlab.New(t)
	for _, b := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s (Debian bird2): %v", b, err)
		}
	}
	l := &anycastLab{t: t, bin: buildBinary(t), dir: t.TempDir(), doc: zonesDoc}
	t.Cleanup(l.wg.Wait)
	l.build(lab)
	l.startAll()

	l.eventually(t, 20*time.Second, "each zone's prefix from its own edge", func() bool {
		return l.learnt(zoneAPrefix, "edge1") && l.learnt(zoneBPrefix, "edge2")
	})
	require.False(t, l.learnt(zoneAPrefix, "edge2"), "edge2 does not serve zone a")
	require.False(t, l.learnt(zoneBPrefix, "edge1"), "edge1 does not serve zone b")
	for _, dst := range []string{zoneAAddr, zoneBAddr} {
		reply, err := l.roundTrip(l.client, dst, "hello")
		require.NoError(t, err, dst)
		require.Equal(t, "echo hello", reply, dst)
	}
	require.Equal(t, []string{"a"}, l.status(t, l.e1).Accelerators[0].Zones)

	l.edge1.Kill(syscall.SIGKILL)
	took := l.eventually(t, 10*time.Second, "zone a's prefix withdrawn", func() bool { return !l.learnt(zoneAPrefix, "edge1") })
	t.Logf("MEASURE zones: every PoP of zone a killed to zone a's prefix gone in BIRD: %s", took.Round(time.Millisecond))
	require.True(t, l.learnt(zoneBPrefix, "edge2"), "zone b's prefix stays")
	reply, err := l.roundTrip(l.client, zoneBAddr, "still")
	require.NoError(t, err, "the zone-b address answers")
	require.Equal(t, "echo still", reply)
	_, err = l.roundTrip(l.client, zoneAAddr, "gone")
	require.Error(t, err, "nothing serves zone a")
}
