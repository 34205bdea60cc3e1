package edge_test

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/acl"
	"github.com/anyedge/anyedge/edge/admit"
	"github.com/anyedge/anyedge/edge/router"
)

// bigAllowList is an allow list of n random IPv4 and IPv6 prefixes plus
// 127.0.0.0/8 (the benchmark's clients).
func bigAllowList(tb testing.TB, n int) *acl.List {
	r := rand.New(rand.NewPCG(1, 2))
	ps := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for len(ps) < n {
		if r.IntN(2) == 0 {
			a := netip.AddrFrom4([4]byte{byte(1 + r.IntN(120)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
			ps = append(ps, netip.PrefixFrom(a, 16+r.IntN(17)).Masked())
			continue
		}
		var b [16]byte
		b[0], b[1] = 0x20, 0x01
		for i := 2; i < 16; i++ {
			b[i] = byte(r.IntN(256))
		}
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(b), 32+r.IntN(97)).Masked())
	}
	l, err := acl.Compile(ps, nil)
	require.NoError(tb, err)
	return l
}

// BenchmarkAcceptAdmission measures whole connections per second on one
// listener (connect, accept, admission, the flow's setup finding no
// route, the reset seen by the client), with no access list and with an
// allow list of 100,000 prefixes, side by side in one run
// (bench/admit.sh). Each op is one connection.
func BenchmarkAcceptAdmission(b *testing.B) {
	list := bigAllowList(b, 100_000)
	for _, tc := range []struct {
		name  string
		rules admit.Rules
	}{{"no-list", admit.Rules{}}, {"allow-100k", admit.Rules{ACL: list}}} {
		b.Run(tc.name, func(b *testing.B) {
			port := freePort(b)
			e, err := edge.New(edge.Config{Listeners: []edge.Listener{{
				Protocol: "tcp", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
				Ports: []edge.PortRange{{From: port, To: port}}, Admission: tc.rules,
				Route: router.Listener{Key: "bench"},
			}}}, edge.Regions{})
			require.NoError(b, err)
			require.NoError(b, e.Listen())
			var wg sync.WaitGroup
			wg.Go(func() { _ = e.Run(context.Background()) })
			defer func() { _ = e.Close(); wg.Wait() }()
			addr := e.Addrs()[0].String()
			buf := make([]byte, 1)
			b.ResetTimer()
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					continue // reset during connect: counted all the same
				}
				_, _ = c.Read(buf) // no route: reset
				_ = c.Close()
			}
		})
	}
}

// BenchmarkGateAdmit is the admission step alone, per new flow.
func BenchmarkGateAdmit(b *testing.B) {
	src := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		name  string
		rules admit.Rules
	}{
		{"no-rules", admit.Rules{}},
		{"allow-100k", admit.Rules{ACL: bigAllowList(b, 100_000)}},
		{"allow-100k+rate+caps", admit.Rules{ACL: bigAllowList(b, 100_000), Rate: 1e9, MaxFlows: 1 << 30, MaxFlowsPerSource: 1 << 30}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			g := admit.NewGate(tc.rules, admit.NewGlobal(0), 0)
			for b.Loop() {
				p, _ := g.Admit(src, time.Now())
				p.Done()
			}
		})
	}
}
