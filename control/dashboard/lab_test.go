package dashboard_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/pki"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/control/dashboard"
	"github.com/anyedge/anyedge/control/node"
	"github.com/anyedge/anyedge/internal/testport"
)

// endpoint is a test endpoint on 127.0.0.1: a TCP server that answers each
// line with its ID (health probes just connect), and, on the same port
// number, a UDP server that echoes datagrams.
type endpoint struct {
	id  string
	ln  net.Listener
	pc  net.PacketConn
	wg  sync.WaitGroup
	die sync.Once
}

func startEndpoint(t *testing.T, id string) *endpoint {
	t.Helper()
	var e *endpoint
	for range 20 { // the UDP port of the same number may be taken
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			_ = ln.Close()
			continue
		}
		e = &endpoint{id: id, ln: ln, pc: pc}
		break
	}
	require.NotNil(t, e, "no port free for both TCP and UDP")
	e.wg.Go(func() {
		for {
			c, err := e.ln.Accept()
			if err != nil {
				return
			}
			e.wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := io.WriteString(c, e.id+"\n"); err != nil {
						return
					}
				}
			})
		}
	})
	e.wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := e.pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = e.pc.WriteTo(buf[:n], from)
		}
	})
	t.Cleanup(e.kill)
	return e
}

func (e *endpoint) addr() string { return e.ln.Addr().String() }

// kill closes both sockets, as a killed process would.
func (e *endpoint) kill() {
	e.die.Do(func() {
		_ = e.ln.Close()
		_ = e.pc.Close()
	})
	e.wg.Wait()
}

// lab is an in-process fleet: PoPs pop-1…, regions r1…, each region with
// its endpoints behind one TCP and one UDP listener of accelerator "web".
// Every PoP serves the accelerator on its own loopback address (127.0.0.2,
// .3, …), as anycast PoPs on separate machines would on one address — or,
// with DNS, as unicast PoPs that DNS steering names.
type lab struct {
	spec      labSpec
	doc       *config.Document // what the dashboard reads
	yaml      func(accelIP string) string
	pops      []string
	regions   []string
	endpoints map[string]*endpoint // by ID
	tcpPort   int
	udpPort   int
	dnsPort   int // every PoP's DNS server, on the PoP's address
	gameBase  int // the custom routing listener's first port
	gamePort  int // the destination port of the custom routing subnet
	pki       *pki.Ephemeral

	// rev is the revision every node reports (the PoPs' documents differ
	// only in their loopback address, a lab artifact); updates reach
	// each node's reloads.
	rev     config.Revision
	updates map[string]chan config.Update
	// source is what every node says of its config source's link (as
	// an etcd source would); nil: none, as a file.
	source atomic.Pointer[config.SourceStatus]

	mu    sync.Mutex
	stops map[string]func() // stops a running node and waits for it
}

// labSpec is the shape of a lab.
type labSpec struct {
	pops, regions, endpointsPer int
	// dns makes the PoPs authoritative servers for a zone and "web" a
	// DNS-steered accelerator (pop-1 first for every client).
	dns bool
	// custom adds the custom routing accelerator "game" (on gameIP at
	// each PoP): subnet game-a (gameSubnet, one TCP destination port)
	// served by r1, with gameAllowed allowed and nothing listening there.
	custom bool
	// probed (with custom) gives game-a's group a health_check and allows
	// gameProbed, where nothing listens either, one by one (address and
	// port): its probe marks it down without any flow.
	probed bool
}

const (
	gameSubnet  = "127.66.0.0/28"
	gameAllowed = "127.66.0.3"
	gameProbed  = "127.66.0.4"
)

// newLab writes the document of the lab: spec.pops PoPs and spec.regions
// regions, each region with spec.endpointsPer TCP endpoints and one UDP
// endpoint.
func newLab(t *testing.T, spec labSpec) *lab {
	t.Helper()
	l := &lab{spec: spec, endpoints: map[string]*endpoint{}, tcpPort: testport.Port(t), udpPort: testport.Port(t), stops: map[string]func(){},
		updates: map[string]chan config.Update{}}
	var tcpGroups, udpGroups, popYAML, regionYAML, dnsYAML, gameYAML strings.Builder
	const hc = "{protocol: tcp, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 1}"
	for r := 1; r <= spec.regions; r++ {
		name := fmt.Sprintf("r%d", r)
		l.regions = append(l.regions, name)
		fmt.Fprintf(&tcpGroups, "          - region: %s\n            health_check: %s\n            endpoints:\n", name, hc)
		for i := range spec.endpointsPer {
			id := fmt.Sprintf("web-%d%c", r, 'a'+i)
			l.endpoints[id] = startEndpoint(t, id)
			fmt.Fprintf(&tcpGroups, "              - {id: %s, address: %q}\n", id, l.endpoints[id].addr())
		}
		id := fmt.Sprintf("dns-%d", r)
		l.endpoints[id] = startEndpoint(t, id)
		fmt.Fprintf(&udpGroups, "          - region: %s\n            health_check: %s\n            endpoints:\n              - {id: %s, address: %q}\n",
			name, hc, id, l.endpoints[id].addr())
		fmt.Fprintf(&regionYAML, "    - name: %s\n      admin: 127.0.0.1:%d\n      backbone: {listen: \"127.0.0.1:%d\"}\n",
			name, testport.Port(t), testport.Port(t))
	}
	var popIPs []string
	for p := 1; p <= spec.pops; p++ {
		name := fmt.Sprintf("pop-%d", p)
		l.pops = append(l.pops, name)
		popIPs = append(popIPs, l.popIP(name))
	}
	if spec.dns {
		l.dnsPort = testport.Port(t)
	}
	for _, name := range l.pops {
		fmt.Fprintf(&popYAML, "    - name: %s\n      admin: 127.0.0.1:%d\n", name, testport.Port(t))
		if spec.dns {
			fmt.Fprintf(&popYAML, "      dns_listen: [\"%s:%d\"]\n", l.popIP(name), l.dnsPort)
		}
	}
	webAddrs := "    ip_addresses: [%[1]s]\n"
	if spec.dns {
		webAddrs = "    steering: dns\n"
		fmt.Fprintf(&dnsYAML, "dns:\n  zone: accel.example.net\n  nameservers: [{name: ns1.accel.example.net, addresses: [%s]}]\n"+
			"  steering:\n    pops:\n", strings.Join(popIPs, ", "))
		for _, name := range l.pops {
			fmt.Fprintf(&dnsYAML, "      - {name: %s, addresses: [%s]}\n", name, l.popIP(name))
		}
		fmt.Fprintf(&dnsYAML, "    catch_all: [%s]\n", strings.Join(l.pops, ", "))
	}
	if spec.custom {
		var gameIPs []string
		for _, ip := range popIPs {
			gameIPs = append(gameIPs, gameIP(ip))
		}
		l.gameBase, l.gamePort = testport.Range(t, 16, gameIPs...), testport.Port(t)
		probed, check := "", ""
		if spec.probed {
			probed = fmt.Sprintf(", {addresses: [%s], ports: [%d]}", gameProbed, l.gamePort)
			check = "\n            health_check: {interval: 1s, timeout: 500ms, unhealthy_threshold: 1}"
		}
		fmt.Fprintf(&gameYAML, `  - name: game
    kind: custom_routing
    ip_addresses: [%%[9]s]
    listeners:
      - port_ranges: [{from: %d, to: %d}]
        endpoint_groups:
          - region: r1
            destination_ports: [{from: %d, protocols: [tcp]}]%s
            subnets:
              - {id: game-a, cidr: %s, listener_port_base: %d, allow: [{addresses: [%s]}%s]}
`, l.gameBase, l.gameBase+15, l.gamePort, check, gameSubnet, l.gameBase, gameAllowed, probed)
	}
	l.yaml = func(ip string) string {
		return fmt.Sprintf(`accelerators:
  - name: web
`+webAddrs+`    listeners:
      - protocol: tcp
        port_ranges: [{from: %[2]d}]
        endpoint_groups:
%[3]s      - protocol: udp
        port_ranges: [{from: %[4]d}]
        endpoint_groups:
%[5]s`+gameYAML.String()+`%[6]stopology:
  pops:
%[7]s  regions:
%[8]s`, ip, l.tcpPort, tcpGroups.String(), l.udpPort, udpGroups.String(), dnsYAML.String(), popYAML.String(), regionYAML.String(),
			gameIP(ip))
	}
	l.doc = l.load(t, "127.0.0.1")
	l.rev = config.RevisionOf([]byte(l.yaml("127.0.0.1")))
	var err error
	l.pki, err = pki.NewEphemeral(append(append([]string{}, l.pops...), l.regions...)...)
	require.NoError(t, err)
	return l
}

func (l *lab) load(t *testing.T, ip string) *config.Document {
	t.Helper()
	doc, err := config.Load([]byte(l.yaml(ip)), config.LoadOptions{})
	require.NoError(t, err, "lab document:\n%s", l.yaml(ip))
	return doc
}

// popIP is the loopback address pop-N serves on: 127.0.0.(N+1).
func (l *lab) popIP(name string) string {
	var n int
	_, _ = fmt.Sscanf(name, "pop-%d", &n)
	return fmt.Sprintf("127.0.0.%d", n+1)
}

// gameIP is the address of the custom routing accelerator at the PoP that
// serves web on webIP: 127.0.10.(N+1), apart from the addresses DNS
// steering names.
func gameIP(webIP string) string {
	a := netip.MustParseAddr(webIP).As4()
	return netip.AddrFrom4([4]byte{127, 0, 10, a[3]}).String()
}

// start runs every region, then every PoP, and returns once all are ready.
func (l *lab) start(t *testing.T) {
	t.Helper()
	for _, names := range [][]string{l.regions, l.pops} {
		ready := make(chan string, len(names))
		for _, name := range names {
			doc := l.doc
			if strings.HasPrefix(name, "pop-") {
				doc = l.load(t, l.popIP(name))
			}
			store, err := l.pki.Store(name, nil)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			updates := make(chan config.Update)
			l.updates[name] = updates // read by the test goroutine only; the node gets its own copy
			go func() {
				done <- node.Run(ctx, node.Options{Doc: doc, Revision: l.rev, Updates: updates, Node: name, Store: store,
					SourceStatus: l.source.Load, Logger: testLogger(t, name), Ready: func() { ready <- name }})
			}()
			stop := sync.OnceFunc(func() {
				cancel()
				select {
				case err := <-done:
					if err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("node %s: %v", name, err)
					}
				case <-time.After(10 * time.Second):
					t.Errorf("node %s did not stop within 10 s", name)
				}
			})
			l.mu.Lock()
			l.stops[name] = stop
			l.mu.Unlock()
			t.Cleanup(stop)
		}
		deadline := time.After(20 * time.Second)
		for range names {
			select {
			case <-ready:
			case <-deadline:
				t.Fatalf("nodes %v not ready within 20 s", names)
			}
		}
	}
}

// stop stops node name and waits for it.
func (l *lab) stop(name string) {
	l.mu.Lock()
	stop := l.stops[name]
	l.mu.Unlock()
	stop()
}

// serveDashboard serves the fleet page of the lab on 127.0.0.1:0 until the
// end of the test and returns its URL.
func (l *lab) serveDashboard(t *testing.T, opts dashboard.Options) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	opts.Logger = testLogger(t, "dashboard")
	d := dashboard.New(dashboard.FleetTargets(l.doc, nil), opts)
	done := make(chan error, 1)
	go func() { done <- d.Serve(t.Context(), ln) }()
	t.Cleanup(func() { require.NoError(t, <-done) })
	return "http://" + ln.Addr().String() + "/"
}

// traffic opens n TCP flows (one line each way) and sends n UDP datagrams
// through PoP pop.
func (l *lab) traffic(pop string, n int) error {
	if n == 0 {
		return nil
	}
	ip := l.popIP(pop)
	for range n {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, fmt.Sprint(l.tcpPort)), 2*time.Second)
		if err != nil {
			return err
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.WriteString(c, "hello\n")
		if err == nil {
			_, err = bufio.NewReader(c).ReadString('\n')
		}
		_ = c.Close()
		if err != nil {
			return fmt.Errorf("through %s: %w", pop, err)
		}
	}
	u, err := net.Dial("udp", net.JoinHostPort(ip, fmt.Sprint(l.udpPort)))
	if err != nil {
		return err
	}
	defer u.Close()
	for range n {
		if _, err = u.Write([]byte("ping")); err != nil {
			return err
		}
	}
	return nil
}

// dnsAddr is the address of pop's DNS server.
func (l *lab) dnsAddr(pop string) string {
	return net.JoinHostPort(l.popIP(pop), fmt.Sprint(l.dnsPort))
}

// ask sends one DNS query for name and qtype to pop's DNS server with
// miekg/dns's client and returns the answer.
func (l *lab) ask(pop, name string, qtype uint16) (*dns.Msg, error) {
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype), l.dnsAddr(pop))
	return r, err
}

// queries sends n DNS queries to pop's DNS server without waiting for the
// answers (some are over the rate limit and never come).
func (l *lab) queries(pop string, n int) error {
	u, err := net.Dial("udp", l.dnsAddr(pop))
	if err != nil {
		return err
	}
	defer u.Close()
	for i := range n {
		name := []string{"web.accel.example.net.", "accel.example.net.", "nope.accel.example.net."}[i%3]
		q, err := new(dns.Msg).SetQuestion(name, []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeNS}[rand.IntN(3)]).Pack()
		if err != nil {
			return err
		}
		if _, err := u.Write(q); err != nil {
			return err
		}
	}
	return nil
}

// gameFlow opens a TCP flow through pop to the custom routing destination
// addr and reads until the flow ends: no destination listens, so the
// region's dial fails and the edge resets the flow.
func (l *lab) gameFlow(pop, addr string) error {
	i := netip.MustParseAddr(addr).As4()[3] - netip.MustParsePrefix(gameSubnet).Addr().As4()[3]
	c, err := net.DialTimeout("tcp", net.JoinHostPort(gameIP(l.popIP(pop)), fmt.Sprint(l.gameBase+int(i))), 2*time.Second)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil // the edge's reset came before connect returned
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "hello\n")
	if _, err := c.Read(make([]byte, 1)); err == nil {
		return fmt.Errorf("through %s: %s answered", pop, addr)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("through %s: %s: no reset within 5 s", pop, addr)
	}
	return nil
}

// startLoad sends traffic through every PoP every 100 ms, more through each
// next one, until stop is called; rounds receives the number of each round
// done. stop returns the first error; it may be called more than once.
func (l *lab) startLoad() (rounds <-chan int, stop func() error) {
	ch := make(chan int, 1)
	quit := make(chan struct{})
	var (
		wg       sync.WaitGroup
		firstErr error
	)
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for round := 0; ; round++ {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			for i, p := range l.pops {
				n := i + rand.IntN(3)
				err := l.traffic(p, n)
				if err == nil && l.spec.dns {
					err = l.queries(p, 2*n)
				}
				if err != nil && firstErr == nil {
					firstErr = err
				}
			}
			if l.spec.custom && round%10 == 0 {
				// Keep the destination that nothing serves down.
				if err := l.gameFlow(l.pops[0], gameAllowed); err != nil && firstErr == nil {
					firstErr = err
				}
			}
			select {
			case ch <- round:
			default:
			}
		}
	})
	return ch, sync.OnceValue(func() error {
		close(quit)
		wg.Wait()
		return firstErr
	})
}

// testLogger writes the nodes' logs to the test log with ANYEDGE_TEST_LOG=1;
// otherwise it discards them.
func testLogger(t *testing.T, name string) *slog.Logger {
	if os.Getenv("ANYEDGE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, nil)).With("test_node", name)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
