package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/admin"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/node"
	"github.com/anyedge/anyedge/internal/testport"
)

// destination is a game server of a custom routing test: on TCP it
// answers each line with "ADDR client=CLIENT", on UDP each datagram with
// the same, CLIENT being what a PROXY v2 header said (or the peer itself
// without one).
type destination struct {
	addr netip.AddrPort
	ln   net.Listener
	pc   net.PacketConn
	wg   sync.WaitGroup
}

func startDestination(t *testing.T, addr netip.AddrPort) *destination {
	t.Helper()
	d := &destination{addr: addr}
	var err error
	d.ln, err = net.Listen("tcp", addr.String())
	require.NoError(t, err)
	d.pc, err = net.ListenPacket("udp", addr.String())
	require.NoError(t, err)
	d.wg.Go(func() {
		for {
			c, err := d.ln.Accept()
			if err != nil {
				return
			}
			d.wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				client := c.RemoteAddr().String()
				// A PROXY v2 header starts with \r; a line of the test
				// never does.
				if b, err := r.Peek(1); err == nil && b[0] == '\r' {
					h, err := proxyproto.Read(r)
					if err != nil {
						return
					}
					client = h.SourceAddr.String()
				}
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := fmt.Fprintf(c, "%s client=%s\n", addr, client); err != nil {
						return
					}
				}
			})
		}
	})
	d.wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := d.pc.ReadFrom(buf)
			if err != nil {
				return
			}
			client := from.String()
			r := bufio.NewReader(bytes.NewReader(buf[:n]))
			if h, err := proxyproto.Read(r); err == nil {
				client = h.SourceAddr.String()
			}
			_, _ = d.pc.WriteTo(fmt.Appendf(nil, "%s client=%s", addr, client), from)
		}
	})
	t.Cleanup(d.stop)
	return d
}

// stop closes the destination's sockets and waits for its goroutines.
func (d *destination) stop() {
	_ = d.ln.Close()
	_ = d.pc.Close()
	d.wg.Wait()
}

// customLab is one PoP and one region serving a custom routing
// accelerator on 127.0.0.1 with two /28 subnets of 127.0.0.0/8, one
// destination port each (TCP and UDP), PROXY v2 towards destinations.
type customLab struct {
	base, destPort        int // first listener port; the destination port
	adminPoP, adminR1     int
	yaml                  string
	doc                   *config.Document
	popAdmin, regionAdmin string
	subnetA, subnetB      netip.Prefix
}

// edits are pairs of old and new text applied to the document, in which
// DESTPORT then stands for the destination port.
func newCustomLab(t *testing.T, edits ...string) *customLab {
	t.Helper()
	l := &customLab{base: testport.Range(t, 32), adminPoP: testport.Port(t), adminR1: testport.Port(t),
		subnetA: netip.MustParsePrefix("127.77.0.0/28"), subnetB: netip.MustParsePrefix("127.78.0.0/28")}
	// One port free on every destination address: the destinations are
	// distinct addresses, so a port free on one is free on the others
	// unless something binds the wildcard.
	l.destPort = testport.Port(t)
	y := fmt.Sprintf(`accelerators:
  - name: game
    kind: custom_routing
    ip_addresses: [127.0.0.1]
    listeners:
      - port_ranges: [{from: %d, to: %d}]
        endpoint_groups:
          - region: r1
            destination_ports: [{from: %d}]
            subnets:
              - id: sub-a
                cidr: %s
                listener_port_base: %d
                client_ip_preservation: true
                allow: [{addresses: [127.77.0.1, 127.77.0.5, 127.77.0.14]}]
              - id: sub-b
                cidr: %s
                listener_port_base: %d
topology:
  pops:
    - name: pop
      admin: 127.0.0.1:%d
  regions:
    - name: r1
      admin: 127.0.0.1:%d
      backbone: {listen: "127.0.0.1:%d"}
`, l.base, l.base+31, l.destPort, l.subnetA, l.base, l.subnetB, l.base+16, l.adminPoP, l.adminR1, testport.Port(t))
	for i := 0; i+1 < len(edits); i += 2 {
		require.Contains(t, y, edits[i])
		y = strings.Replace(y, edits[i], edits[i+1], 1)
	}
	l.yaml = strings.ReplaceAll(y, "DESTPORT", strconv.Itoa(l.destPort))
	doc, err := config.Load([]byte(l.yaml), config.LoadOptions{})
	require.NoError(t, err, l.yaml)
	l.doc = doc
	l.popAdmin, l.regionAdmin = fmt.Sprintf("127.0.0.1:%d", l.adminPoP), fmt.Sprintf("127.0.0.1:%d", l.adminR1)
	return l
}

// port is the listener port of destination address a (the port map:
// base + offset in the subnet, one destination port per address).
func (l *customLab) port(a string) int {
	addr := netip.MustParseAddr(a)
	pfx, base := l.subnetA, l.base
	if !pfx.Contains(addr) {
		pfx, base = l.subnetB, l.base+16
	}
	return base + int(addr.As4()[3]-pfx.Addr().As4()[3])
}

func (l *customLab) dest(a string) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(a), uint16(l.destPort))
}

// ask sends a line over TCP to listener port p from 127.0.0.2 and returns
// the answer.
func ask(p int) (string, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line) + "|" + c.LocalAddr().String(), err
}

// askUDP sends a datagram to listener port p, up to tries times, and
// returns the answer and the client socket's address.
func askUDP(t *testing.T, p, tries int) (string, string) {
	t.Helper()
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", p))
	require.NoError(t, err)
	defer c.Close()
	buf := make([]byte, 512)
	for range tries {
		_, err := c.Write([]byte("ping"))
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), c.LocalAddr().String()
		}
	}
	return "", c.LocalAddr().String()
}

// refusedQuickly reports whether a connection to listener port p was
// accepted and then reset without an answer (an edge refusal).
func refusedQuickly(p int) error {
	_, err := ask(p)
	if err == nil {
		return errors.New("answered")
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("not a reset: %w", err)
	}
	return nil
}

// TestCustomRouting runs a custom routing accelerator end to end on real
// sockets: mapped ports reach their destinations over TCP and UDP with
// the client's address in PROXY v2, a destination nobody allowed is
// refused with a reset (custom_routing_denied), and a destination whose
// dial failed is refused at once afterwards (destination down).
func TestCustomRouting(t *testing.T) {
	l := newCustomLab(t)
	for _, a := range []string{"127.77.0.1", "127.77.0.5", "127.77.0.6", "127.78.0.3"} {
		startDestination(t, l.dest(a))
	}
	runNodes(t, l.doc, []string{"r1", "pop"}, ephemeralStores(t, "r1", "pop"))

	t.Run("mapped ports reach their destinations", func(t *testing.T) {
		for _, a := range []string{"127.77.0.1", "127.77.0.5"} {
			got, err := ask(l.port(a))
			require.NoError(t, err, a)
			answer, client, _ := strings.Cut(got, "|")
			require.Equal(t, fmt.Sprintf("%s client=%s", l.dest(a), client), answer, "PROXY v2 names the client")
		}
	})
	t.Run("udp with PROXY v2", func(t *testing.T) {
		got, client := askUDP(t, l.port("127.77.0.5"), 20)
		require.Equal(t, fmt.Sprintf("%s client=%s", l.dest("127.77.0.5"), client), got)
	})
	t.Run("denied by default", func(t *testing.T) {
		for _, a := range []string{"127.77.0.6", "127.78.0.3"} {
			require.NoError(t, refusedQuickly(l.port(a)), a)
		}
		got, _ := askUDP(t, l.port("127.78.0.3"), 1)
		require.Empty(t, got, "nothing answers a denied UDP flow")
		st := waitStatus(t, l.popAdmin, "denials counted, UDP too", func(st node.EdgeStatus) bool {
			return st.Flows.Refused["custom_routing_denied"] >= 3 && st.Listeners[1].Refused["custom_routing_denied"] >= 1
		})
		require.Equal(t, "udp", st.Listeners[1].Protocol)
		require.Zero(t, st.Flows.Refused["no_healthy_endpoint"])
	})
	t.Run("a failed dial marks the destination down", func(t *testing.T) {
		// 127.77.0.14 is allowed but nothing listens there: the first
		// flow's dial is refused, later ones are refused without a dial.
		require.NoError(t, refusedQuickly(l.port("127.77.0.14")))
		require.NoError(t, refusedQuickly(l.port("127.77.0.14")))
		waitStatus(t, l.popAdmin, "down destination refused", func(st node.EdgeStatus) bool {
			return st.Flows.Refused["endpoint_failed"] >= 1 && st.Flows.Refused["no_healthy_endpoint"] >= 1
		})
	})
	t.Run("allow at run time", func(t *testing.T) {
		waitStatus(t, l.popAdmin, "the region's custom state at the edge", func(st node.EdgeStatus) bool {
			return st.CustomRouting != nil && len(st.CustomRouting.Regions) == 1 && st.CustomRouting.Regions[0].Known
		})
		refusedAtRegion := func() float64 {
			return sum(scrape(t, l.regionAdmin), "anyedge_backbone_streams_refused_total", `code="denied"`)
		}
		before := refusedAtRegion()
		require.NoError(t, refusedQuickly(l.port("127.78.0.3")))
		require.Equal(t, before, refusedAtRegion(), "the edge refused it from the region's pushed state, without a stream")

		// The edge is not the authority and says who is.
		_, err := adminPost(l.popAdmin, "/custom-routing/allow", `{"subnet":"sub-b","addresses":["127.78.0.3"]}`)
		require.ErrorContains(t, err, `409 Conflict: subnet "sub-b" is served by region r1`)
		_, err = adminPost(l.regionAdmin, "/custom-routing/allow", `{"subnet":"sub-b","addresses":["127.99.0.3"]}`)
		require.ErrorContains(t, err, "address 127.99.0.3 is outside subnet sub-b (127.78.0.0/28)")

		out, err := adminPost(l.regionAdmin, "/custom-routing/allow", fmt.Sprintf(`{"subnet":"sub-b","addresses":["127.78.0.3"],"ports":[%d]}`, l.destPort))
		require.NoError(t, err)
		require.Contains(t, out, `"address": "127.78.0.3"`)
		start := time.Now()
		var got string
		require.Eventually(t, func() bool { got, err = ask(l.port("127.78.0.3")); return err == nil }, 10*time.Second, 20*time.Millisecond)
		t.Logf("MEASURE allow at run time: POST to the first served flow through the edge: %s", time.Since(start).Round(time.Millisecond))
		require.True(t, strings.HasPrefix(got, l.dest("127.78.0.3").String()+" client=127.0.0.1:"), "sub-b sends no PROXY header: %s", got)

		var rs node.RegionStatus
		b, err := adminCall(l.regionAdmin, "status")
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal([]byte(b), &rs))
		require.NotNil(t, rs.CustomRouting)
		require.Equal(t, []node.OverrideState{{Subnet: "sub-b", Address: netip.MustParseAddr("127.78.0.3"), Port: uint16(l.destPort), Allow: true}},
			rs.CustomRouting.Overrides, "run-time allows are shown in /status")
		require.Len(t, rs.CustomRouting.Subnets, 2)

		// Deny the whole subnet again: the edge refuses at once.
		out, err = adminPost(l.regionAdmin, "/custom-routing/deny", `{"subnet":"sub-b","all":true}`)
		require.NoError(t, err)
		require.Contains(t, out, `"overrides": [
    {
      "subnet": "sub-b",
      "allow": false
    }
  ]`)
		require.Eventually(t, func() bool { return refusedQuickly(l.port("127.78.0.3")) == nil }, 10*time.Second, 20*time.Millisecond)
	})
	t.Run("port map lookup", func(t *testing.T) {
		for _, admin := range []string{l.popAdmin, l.regionAdmin} {
			b, err := adminGet(admin, "/port-map?destination="+l.dest("127.77.0.5").String())
			require.NoError(t, err)
			var ans node.PortMapAnswer
			require.NoError(t, json.Unmarshal(b, &ans))
			require.Len(t, ans.Mappings, 1, "%s", b)
			m := ans.Mappings[0]
			require.Equal(t, l.port("127.77.0.5"), int(m.ListenerPort))
			require.Equal(t, []string{"127.0.0.1"}, m.Addresses)
			require.Equal(t, "sub-a", m.Subnet)
			require.Equal(t, []string{"tcp", "udp"}, m.Protocols)
			require.NotNil(t, m.Allowed)
			require.True(t, *m.Allowed)
		}
		// The PoP learns the region's run-time deny over the backbone's
		// control stream, after the region itself refuses: wait for it.
		var b []byte
		require.Eventually(t, func() bool {
			var err error
			b, err = adminGet(l.popAdmin, fmt.Sprintf("/port-map?port=%d", l.port("127.78.0.3")))
			return err == nil && strings.Contains(string(b), `"allowed": false`)
		}, 10*time.Second, 20*time.Millisecond, "the PoP's port map never showed the deny")
		require.Contains(t, string(b), `"destination": "`+l.dest("127.78.0.3").String()+`"`)
		b, err := adminGet(l.popAdmin, "/port-map")
		require.NoError(t, err)
		var blocks node.PortMapAnswer
		require.NoError(t, json.Unmarshal(b, &blocks))
		require.Len(t, blocks.Subnets, 2)
		require.Equal(t, uint16(l.base+16), blocks.Subnets[1].FirstPort)
		// A matchmaker's rate over HTTP, one keep-alive connection.
		c := admin.NewClient(l.popAdmin, nil)
		defer c.Close()
		const n = 200
		start := time.Now()
		for range n {
			_, err := c.Get(context.Background(), "/port-map?destination="+l.dest("127.77.0.5").String())
			require.NoError(t, err)
		}
		took := time.Since(start)
		t.Logf("MEASURE port-map lookups over the admin API: %d sequential in %s, %.0f/s", n, took.Round(time.Millisecond), n/took.Seconds())
		_, err = adminGet(l.popAdmin, "/port-map?destination=nonsense")
		require.ErrorContains(t, err, `400 Bad Request: destination "nonsense" is not address:port`)
	})
}

// adminGet fetches path from an admin API.
func adminGet(addr, path string) ([]byte, error) {
	c := admin.NewClient(addr, nil)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Get(ctx, path)
}

// adminPost posts a JSON body to an admin API.
func adminPost(addr, path, body string) (string, error) {
	c := admin.NewClient(addr, nil)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := c.Post(ctx, path, json.RawMessage(body))
	return string(b), err
}
