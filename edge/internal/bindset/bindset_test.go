package bindset_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/internal/bindset"
	"github.com/anyedge/anyedge/internal/testport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type portRange struct{ From, To uint16 }

// listener is a listener configuration: a key and its addresses.
type listener struct {
	key string
	aps []netip.AddrPort
}

func (l *listener) Key() string                 { return l.key }
func (l *listener) AddrPorts() []netip.AddrPort { return l.aps }

// sock is a real TCP socket on loopback that records what the set did
// to it.
type sock struct {
	ln      *net.TCPListener
	ap      netip.AddrPort
	cur     *listener
	serves  int // Serve calls
	removed bool
	closed  bool
}

var _ bindset.Socket[*listener] = (*sock)(nil)

func (s *sock) Close() error             { s.closed = true; return s.ln.Close() }
func (s *sock) String() string           { return s.ln.Addr().String() }
func (s *sock) AddrPort() netip.AddrPort { return s.ap }
func (s *sock) Serve(l *listener)        { s.cur = l; s.serves++ }
func (s *sock) Remove()                  { s.removed = true }
func bind(ap netip.AddrPort, l *listener) (*sock, error) {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", l.key, err)
	}
	return &sock{ln: ln, ap: ap, cur: l}, nil
}

// ports returns n consecutive loopback addresses and ports that were free.
func ports(t *testing.T, n int) []netip.AddrPort {
	first := testport.Range(t, n)
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(first+i))
	}
	return out
}

// requireFree fails unless every one of aps can be bound (and then frees
// it again): nothing holds it.
func requireFree(t *testing.T, aps ...netip.AddrPort) {
	t.Helper()
	for _, ap := range aps {
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
		require.NoError(t, err, "%s is still bound", ap)
		require.NoError(t, ln.Close())
	}
}

func closeAll(t *testing.T, socks []*sock) {
	t.Cleanup(func() {
		for _, s := range socks {
			_ = s.ln.Close()
		}
	})
}

func TestPlan(t *testing.T) {
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")
	aps := bindset.Expand([]netip.Addr{a, b}, []portRange{{80, 81}, {443, 443}})
	require.Len(t, aps, 6)
	require.Equal(t, netip.AddrPortFrom(b, 443), aps[5])

	p, err := bindset.NewPlan([]*listener{{"web", aps[:3]}, {"api", aps[3:]}})
	require.NoError(t, err)
	require.Equal(t, "api", p[aps[4]].key)
	require.ErrorContains(t, p.Add(&listener{"other", aps[:1]}), "listeners web and other both listen on 198.18.0.1:80")
	_, err = bindset.NewPlan([]*listener{{"web", aps[:3]}, {"api", aps[2:]}})
	require.ErrorContains(t, err, "listeners web and api both listen on 198.18.0.1:443")

	have := map[netip.AddrPort]bool{aps[0]: true, aps[5]: true}
	require.Equal(t, []netip.AddrPort{aps[1], aps[2], aps[3], aps[4]}, p.Fresh(have), "in order, without those bound")
}

// TestKeepAddRemove runs two reloads: the first binds every socket, the
// second keeps the sockets whose address and port stay (even when another
// listener takes them), closes the ones gone and binds the new ones.
func TestKeepAddRemove(t *testing.T) {
	aps := ports(t, 4)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))

	web, api := &listener{"web", aps[0:2]}, &listener{"api", aps[2:3]}
	u, err := bindset.Prepare([]*listener{web, api}, bindset.Serving[*listener, *sock](nil), true, bind)
	require.NoError(t, err)
	var started []*sock
	socks, ch := u.Commit(nil, true, func(s *sock) { started = append(started, s) })
	closeAll(t, socks)
	require.True(t, u.Done())
	require.Equal(t, []netip.AddrPort{aps[0], aps[1], aps[2]}, ch.Added)
	require.Empty(t, ch.Removed)
	require.Equal(t, map[flow.Reason]int{}, ch.Cut, "empty, for the component to count its cuts")
	require.Equal(t, socks, started, "every new socket started")
	u.Log(log, "tcp", ch)
	require.Equal(t, fmt.Sprintf("level=INFO msg=listening listener=web protocol=tcp addrs=\"[%s %s]\"\n", aps[0], aps[1])+
		fmt.Sprintf("level=INFO msg=listening listener=api protocol=tcp addrs=[%s]\n", aps[2]), logs.String())
	logs.Reset()

	// web keeps aps[1] and takes aps[3]; api's aps[2] goes to games;
	// aps[0] is gone.
	web2, games := &listener{"web", []netip.AddrPort{aps[1], aps[3]}}, &listener{"games", aps[2:3]}
	have := bindset.Serving(socks)
	require.Equal(t, map[netip.AddrPort]bool{aps[0]: true, aps[1]: true, aps[2]: true}, have)
	u, err = bindset.Prepare([]*listener{web2, games}, have, true, bind)
	require.NoError(t, err)
	old := socks
	started = nil
	socks, ch = u.Commit(socks, true, func(s *sock) { started = append(started, s) })
	closeAll(t, socks)
	require.Equal(t, []netip.AddrPort{aps[3]}, ch.Added)
	require.Equal(t, []netip.AddrPort{aps[0]}, ch.Removed)
	require.Equal(t, []*sock{old[1], old[2], started[0]}, socks, "kept in order, then the new one")
	require.Len(t, started, 1)
	require.Equal(t, aps[3], started[0].ap)

	require.True(t, old[0].removed && old[0].closed, "the socket of an address gone is marked, then closed")
	requireFree(t, aps[0])
	for _, s := range old[1:] {
		require.False(t, s.removed || s.closed, "%s is kept", s.ap)
		require.Equal(t, 1, s.serves)
	}
	require.Same(t, web2, old[1].cur)
	require.Same(t, games, old[2].cur, "a kept socket serves whichever listener has its address now")
	require.Same(t, web2, started[0].cur)

	u.Log(log, "tcp", ch)
	require.Equal(t, fmt.Sprintf("level=INFO msg=listening listener=web protocol=tcp addrs=[%s]\n", aps[3])+
		fmt.Sprintf("level=INFO msg=\"listener closed\" protocol=tcp addr=%s\n", aps[0]), logs.String())

	again, ch := u.Commit(socks, true, func(*sock) { t.Fatal("a second Commit started a socket") })
	require.Equal(t, socks, again)
	require.Equal(t, bindset.Changes{}, ch, "a second Commit does nothing")
	u.Abort()
	for _, s := range socks {
		require.False(t, s.closed, "Abort after Commit closed %s", s.ap)
	}
}

// TestBindFailureRollsBack fails the third bind of four: the two bound
// before it are closed, and the sockets in force are untouched.
func TestBindFailureRollsBack(t *testing.T) {
	aps := ports(t, 5)
	kept, err := bind(aps[0], &listener{key: "web"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = kept.ln.Close() })
	foreign, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(aps[3]))
	require.NoError(t, err)
	t.Cleanup(func() { _ = foreign.Close() })

	var bound []*sock
	counting := func(ap netip.AddrPort, l *listener) (*sock, error) {
		s, err := bind(ap, l)
		if err == nil {
			bound = append(bound, s)
		}
		return s, err
	}
	u, err := bindset.Prepare([]*listener{{"web", aps}}, bindset.Serving([]*sock{kept}), true, counting)
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	require.ErrorContains(t, err, "listener web")
	require.Nil(t, u)
	require.Len(t, bound, 2, "aps[1] and aps[2] were bound before aps[3] failed")
	for _, s := range bound {
		require.True(t, s.closed)
	}
	requireFree(t, aps[1], aps[2], aps[4])
	require.False(t, kept.closed || kept.removed, "the socket in force is untouched")
}

func TestAbort(t *testing.T) {
	aps := ports(t, 2)
	u, err := bindset.Prepare([]*listener{{"web", aps}}, nil, true, bind)
	require.NoError(t, err)
	require.False(t, u.Done())
	u.Abort()
	require.True(t, u.Done())
	requireFree(t, aps...)
	socks, ch := u.Commit(nil, true, func(*sock) { t.Fatal("Commit after Abort started a socket") })
	require.Empty(t, socks)
	require.Equal(t, bindset.Changes{}, ch)
	u.Abort()
}

// TestClosed covers a component that no longer takes sockets: closed
// before Prepare, it binds nothing; closed between Prepare and Commit,
// what Prepare bound is closed, not added.
func TestClosed(t *testing.T) {
	aps := ports(t, 2)
	u, err := bindset.Prepare([]*listener{{"web", aps}}, nil, false, func(netip.AddrPort, *listener) (*sock, error) {
		t.Fatal("a closed component bound a socket")
		return nil, nil
	})
	require.NoError(t, err)
	socks, ch := u.Commit(nil, false, nil)
	require.Empty(t, socks)
	require.Empty(t, ch.Added)

	var bound []*sock
	u, err = bindset.Prepare([]*listener{{"web", aps}}, nil, true, func(ap netip.AddrPort, l *listener) (*sock, error) {
		s, err := bind(ap, l)
		bound = append(bound, s)
		return s, err
	})
	require.NoError(t, err)
	socks, ch = u.Commit(nil, false, func(*sock) { t.Fatal("a closed component started a socket") })
	require.Empty(t, socks)
	require.Empty(t, ch.Added)
	require.Len(t, bound, 2)
	for _, s := range bound {
		require.True(t, s.closed)
	}
	requireFree(t, aps...)
}
