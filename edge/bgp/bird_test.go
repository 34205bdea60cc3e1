package bgp

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/internal/needs"
	"github.com/anyedge/anyedge/internal/testport"
)

// birdConfig is the BIRD 2 side of the lab. The gshut filter is the
// receiving half of a drain (RFC 8326): docs/bgp.md shows the same filter.
const birdConfig = `router id {{.Router}};
log "{{.Dir}}/bird.log" all;

protocol device { scan time 1; }

# Honour GRACEFUL_SHUTDOWN (RFC 8326): a draining edge keeps its routes but
# they lose against every other path.
filter anyedge_in {
  if (65535, 0) ~ bgp_community then bgp_local_pref = 0;
  accept;
}

template bgp anyedge {
  local as 65000;
  passive on;
  hold time 3;
  keepalive time 1;
  error wait time 1, 2;
  ipv4 { import filter anyedge_in; export none; };
  ipv6 { import filter anyedge_in; export none; };
}

protocol bgp edge1 from anyedge {
  local {{.Router}} as 65000;
  neighbor {{.Edge}} as 65001;
}

# The edge is configured with a wrong AS number for this one. It dials the
# edge's listening port, so that the edge sees the wrong AS in the OPEN.
protocol bgp wrongas from anyedge {
  local {{.WrongAS}} as 65000;
  neighbor {{.Edge}} port {{.Port}} as 65001;
  passive off;
  connect delay time 1;
  connect retry time 1;
}
`

// lab is a network namespace holding BIRD, linked to the test's own
// namespace by a veth pair.
type lab struct {
	ns      string
	link    string
	net     int // third octet of 198.18.N.0/29 and group of 2001:db8:ffff:N::/64
	dir     string
	sock    string
	birdPID int
}

func (l *lab) v4(host int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(l.net), byte(host)})
}

func (l *lab) v6(host int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:ffff:%d::%d", l.net, host))
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(t, err, "%s: %s", strings.Join(args, " "), out)
}

// newLab creates the namespace, the link and starts BIRD; everything is
// removed in t.Cleanup.
func newLab(t *testing.T, port int) *lab {
	if os.Geteuid() != 0 {
		needs.Skip(t, "needs root for network namespaces")
	}
	for _, bin := range []string{"ip", "bird", "birdc"} {
		if _, err := exec.LookPath(bin); err != nil {
			needs.Skipf(t, "needs %s: %v", bin, err)
		}
	}
	pid := os.Getpid()
	l := &lab{
		ns:   fmt.Sprintf("ae-bgp-%d-r", pid),
		link: fmt.Sprintf("aebgp%d", pid%1000000),
		net:  100 + pid%100,
		dir:  t.TempDir(),
	}
	l.sock = filepath.Join(l.dir, "bird.ctl")
	peer := l.link + "r"

	run(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.ns).Run() })
	run(t, "ip", "link", "add", l.link, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", l.link).Run() })
	run(t, "ip", "link", "set", peer, "netns", l.ns)
	run(t, "ip", "addr", "add", l.v4(1).String()+"/29", "dev", l.link)
	run(t, "ip", "-6", "addr", "add", l.v6(1).String()+"/64", "dev", l.link, "nodad")
	run(t, "ip", "link", "set", l.link, "up")
	in := func(args ...string) { run(t, append([]string{"ip", "netns", "exec", l.ns}, args...)...) }
	in("ip", "link", "set", "lo", "up")
	for _, h := range []int{2, 3, 4} {
		in("ip", "addr", "add", l.v4(h).String()+"/29", "dev", peer)
	}
	in("ip", "-6", "addr", "add", l.v6(2).String()+"/64", "dev", peer, "nodad")
	in("ip", "link", "set", peer, "up")

	var conf bytes.Buffer
	require.NoError(t, template.Must(template.New("bird").Parse(birdConfig)).Execute(&conf, map[string]any{
		"Router": l.v4(2), "WrongAS": l.v4(3), "Edge": l.v4(1), "Dir": l.dir, "Port": port,
	}))
	confPath := filepath.Join(l.dir, "bird.conf")
	require.NoError(t, os.WriteFile(confPath, conf.Bytes(), 0o600))
	cmd := exec.Command("ip", "netns", "exec", l.ns, "bird", "-f", "-c", confPath, "-s", l.sock, "-P", filepath.Join(l.dir, "bird.pid"))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	require.NoError(t, cmd.Start())
	l.birdPID = cmd.Process.Pid
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := l.birdc("show protocols all")
			t.Logf("birdc show protocols all:\n%s", out)
		}
		_ = syscall.Kill(l.birdPID, syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(l.dir, "bird.log"))
			t.Logf("bird.log:\n%s", b)
		}
	})
	l.eventually(t, 10*time.Second, "bird up", func() bool {
		_, err := l.birdc("show status")
		return err == nil
	})
	return l
}

func (l *lab) birdc(cmd string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", l.sock}, strings.Fields(cmd)...)...).CombinedOutput()
	return string(out), err
}

func (l *lab) mustBirdc(t *testing.T, cmd string) string {
	t.Helper()
	out, err := l.birdc(cmd)
	require.NoError(t, err, out)
	return out
}

// eventually polls cond until it holds or the deadline passes.
func (l *lab) eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		<-tick.C
	}
	return time.Since(start)
}

func (l *lab) hasRoute(t *testing.T, prefix string) bool {
	t.Helper()
	out, err := l.birdc("show route " + prefix)
	if strings.Contains(out, "Network not found") {
		return false
	}
	require.NoError(t, err, out)
	return strings.Contains(out, prefix)
}

// dialFrom connects from the lab namespace, with source address src.
func (l *lab) dialFrom(src netip.Addr, dst string) (net.Conn, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := netns.GetFromName(l.ns)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 3 * time.Second}
	c, err := d.Dial("tcp", dst)
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		panic(fmt.Sprintf("restore network namespace: %v", err))
	}
	runtime.UnlockOSThread()
	return c, err
}

func peerStatus(s *Speaker, a netip.Addr) PeerStatus {
	for _, p := range s.Peers() {
		if p.Address == a {
			return p
		}
	}
	return PeerStatus{}
}

func TestBIRD(t *testing.T) {
	port := testport.Port(t)
	l := newLab(t, port)
	before := goleak.IgnoreCurrent()

	v4, v6 := "203.0.113.0/24", "2001:db8:1::/48"
	edge, good, wrong, ghost := l.v4(1), l.v4(2), l.v4(3), l.v4(4)
	timers := func(n Neighbor) Neighbor { n.HoldTime, n.Keepalive = 3*time.Second, time.Second; return n }
	cfg := Config{
		LocalASN:         65001,
		RouterID:         edge,
		ListenPort:       port,
		Communities:      []uint32{65001<<16 | 100},
		LargeCommunities: [][3]uint32{{65001, 1, 2}},
		MED:              50,
		ASPathPrepend:    2,
		HoldDown:         time.Second,
		ConnectRetry:     time.Second,
		NextHop6:         l.v6(1),
		Neighbors: []Neighbor{
			timers(Neighbor{Address: good, PeerASN: 65000}),
			timers(Neighbor{Address: wrong, PeerASN: 65099}),
			timers(Neighbor{Address: ghost, PeerASN: 65000, Passive: true}),
		},
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := New(cfg, logger)
	require.NoError(t, err)
	s.SetAnnounce([]netip.Prefix{netip.MustParsePrefix(v4), netip.MustParsePrefix(v6)})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()

	established := func() bool {
		return strings.Contains(l.mustBirdc(t, "show protocols edge1"), "Established") &&
			peerStatus(s, good).State == "established"
	}

	t.Run("announce", func(t *testing.T) {
		took := l.eventually(t, 20*time.Second, "session and routes", func() bool {
			return established() && l.hasRoute(t, v4) && l.hasRoute(t, v6)
		})
		t.Logf("session up and routes learnt %s after Run", took.Round(time.Millisecond))
		out := l.mustBirdc(t, "show route all "+v4)
		for _, want := range []string{
			"BGP.as_path: 65001 65001 65001",
			"BGP.med: 50",
			"BGP.local_pref: 100",
			"BGP.community: (65001,100)",
			"BGP.large_community: (65001, 1, 2)",
			"BGP.next_hop: " + edge.String(),
		} {
			require.Contains(t, out, want)
		}
		out = l.mustBirdc(t, "show route all "+v6)
		require.Contains(t, out, "BGP.next_hop: "+l.v6(1).String())
		require.Contains(t, out, "BGP.as_path: 65001 65001 65001")
		require.Equal(t, []netip.Prefix{netip.MustParsePrefix(v4), netip.MustParsePrefix(v6)}, s.Announced())
		require.Eventually(t, func() bool { return peerStatus(s, good).PrefixesAdvertised == 2 }, 5*time.Second, 10*time.Millisecond)
		require.Positive(t, peerStatus(s, good).Uptime)
	})

	t.Run("graceful shutdown", func(t *testing.T) {
		s.SetGracefulShutdown(true)
		took := l.eventually(t, 5*time.Second, "GRACEFUL_SHUTDOWN", func() bool {
			out := l.mustBirdc(t, "show route all "+v4)
			return strings.Contains(out, "(65535,0)") && strings.Contains(out, "BGP.local_pref: 0")
		})
		t.Logf("GRACEFUL_SHUTDOWN seen by BIRD after %s", took.Round(time.Millisecond))
		require.Contains(t, l.mustBirdc(t, "show route all "+v6), "(65535,0)")
		s.SetGracefulShutdown(false)
		l.eventually(t, 5*time.Second, "undrain", func() bool {
			out := l.mustBirdc(t, "show route all "+v4)
			return !strings.Contains(out, "(65535,0)") && strings.Contains(out, "BGP.local_pref: 100")
		})
	})

	t.Run("wrong peer AS", func(t *testing.T) {
		l.eventually(t, 15*time.Second, "bad peer AS recorded", func() bool {
			return strings.Contains(strings.ToLower(peerStatus(s, wrong).LastError), "bad peer as")
		})
		t.Logf("wrong AS peer: %+v", peerStatus(s, wrong))
		require.NotEqual(t, "established", peerStatus(s, wrong).State)
		require.True(t, established())
	})

	t.Run("garbage on listen port", func(t *testing.T) {
		const closeWithin = 30 * time.Second
		dst := net.JoinHostPort(edge.String(), strconv.Itoa(cfg.ListenPort))
		// Random bytes from an address that is no neighbour: closed at once.
		junk := make([]byte, 4096)
		_, _ = rand.Read(junk)
		c, err := net.DialTimeout("tcp", dst, 3*time.Second)
		require.NoError(t, err)
		_, _ = c.Write(junk) // the speaker may have closed already
		// closeWithin is far below the 240 s a kept connection would last
		// (the OpenSent hold timer) and far above what a loaded machine
		// takes to close one: the test tells closed from kept, not fast
		// from slow.
		_ = c.SetReadDeadline(time.Now().Add(closeWithin))
		_, err = io.Copy(io.Discard, c)
		require.False(t, isTimeout(err), "speaker kept a connection from a stranger open")
		c.Close()

		// Junk from a configured (passive) neighbour's address, whose FSM
		// parses it: the header's length field is below the minimum, so the
		// FSM must answer with a NOTIFICATION and close. Fully random bytes
		// are not used here: GoBGP v3.37.0 waits for as many bytes as the
		// length field says (up to the 240s OpenSent hold timer) and crashes
		// the process on an unknown message type (osrg/gobgp#3325).
		c, err = l.dialFrom(ghost, dst)
		require.NoError(t, err)
		bad := make([]byte, 64)
		_, _ = rand.Read(bad)
		bad[16], bad[17] = 0, 5
		_, _ = c.Write(bad)
		_ = c.SetReadDeadline(time.Now().Add(closeWithin))
		_, err = io.Copy(io.Discard, c)
		if isTimeout(err) {
			// GoBGP v3.37 sometimes resets the session without a word and
			// leaves the connection open: its OpenSent state answers a
			// malformed header through sendNotificationFromErrorMsg, which
			// writes and closes only when the FSM's handler has its
			// connection set, and otherwise returns to Idle with the socket
			// open (seen once in a day of clean-clone runs, under -race;
			// SECURITY.md).
			// What anyedge owns is asserted below: the speaker records the
			// error and runs on.
			t.Logf("GoBGP kept the malformed connection from neighbour %s open past %s", ghost, closeWithin)
		}
		c.Close()
		l.eventually(t, closeWithin, "ghost error", func() bool { return peerStatus(s, ghost).LastError != "" })
		t.Logf("garbage from a neighbour address: %q", peerStatus(s, ghost).LastError)

		select {
		case err := <-runErr:
			t.Fatalf("Run returned: %v", err)
		default:
		}
		require.True(t, established())
		require.True(t, l.hasRoute(t, v4))
	})

	t.Run("withdraw and hold-down", func(t *testing.T) {
		start := time.Now()
		s.SetAnnounce(nil)
		l.eventually(t, 5*time.Second, "withdrawal", func() bool { return !l.hasRoute(t, v4) && !l.hasRoute(t, v6) })
		t.Logf("withdrawal: SetAnnounce(nil) to route gone in BIRD: %s", time.Since(start).Round(time.Millisecond))
		require.Empty(t, s.Announced())

		s.SetAnnounce([]netip.Prefix{netip.MustParsePrefix(v4), netip.MustParsePrefix(v6)})
		l.eventually(t, 5*time.Second, "re-announcement", func() bool { return l.hasRoute(t, v4) && l.hasRoute(t, v6) })
		held := time.Since(start)
		t.Logf("re-announcement reached BIRD %s after the withdrawal (hold-down %s)", held.Round(time.Millisecond), cfg.HoldDown)
		require.GreaterOrEqual(t, held, cfg.HoldDown)
	})

	t.Run("stop", func(t *testing.T) {
		start := time.Now()
		cancel()
		select {
		case err := <-runErr:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
		l.eventually(t, 5*time.Second, "routes gone", func() bool {
			return !l.hasRoute(t, v4) && !l.hasRoute(t, v6) &&
				!strings.Contains(l.mustBirdc(t, "show protocols edge1"), "Established")
		})
		t.Logf("stop: cancel to routes gone in BIRD: %s", time.Since(start).Round(time.Millisecond))
		require.Empty(t, s.Announced())
		require.Equal(t, "idle", peerStatus(s, good).State)
		goleak.VerifyNone(t, before, goleak.IgnoreAnyFunction(gobgpServe))
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestDocsBIRDFilter keeps the graceful-shutdown filter of docs/bgp.md equal
// to the one TestBIRD runs against a real BIRD.
func TestDocsBIRDFilter(t *testing.T) {
	doc, err := os.ReadFile("../../docs/bgp.md")
	require.NoError(t, err)
	filter := func(s string) string {
		i := strings.Index(s, "filter anyedge_in {")
		require.GreaterOrEqual(t, i, 0)
		j := strings.Index(s[i:], "\n}\n")
		require.Positive(t, j)
		return s[i : i+j+3]
	}
	require.Equal(t, filter(birdConfig), filter(string(doc)))
}
