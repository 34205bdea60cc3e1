package router

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// view is a View over maps: a region missing from rtt is unreachable, an
// endpoint in down is unhealthy.
type view struct {
	rtt  map[string]time.Duration
	down map[[2]string]bool
}

func newView(rtt map[string]time.Duration, down ...string) *view {
	v := &view{rtt: rtt, down: make(map[[2]string]bool, len(down))}
	for _, k := range down {
		r, id, _ := strings.Cut(k, "/")
		v.down[[2]string{r, id}] = true
	}
	return v
}

var _ View = (*view)(nil)

func (v *view) RegionRTT(region string) (time.Duration, bool) {
	d, ok := v.rtt[region]
	return d, ok
}

func (v *view) EndpointHealthy(region, id string) bool {
	return !v.down[[2]string{region, id}]
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func mustCompile(t testing.TB, l Listener) *Table {
	t.Helper()
	tb, err := Compile(l)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// flows returns n pseudo-random TCP flows from distinct IPv4 clients to one
// accelerator address; the same seed gives the same flows.
func flows(n int, seed uint64) []Flow {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	dst := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.10"), 443)
	out := make([]Flow, n)
	for i := range out {
		a := r.Uint32()
		src := netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
		out[i] = Flow{Proto: 6, Src: netip.AddrPortFrom(src, uint16(1024+r.IntN(64000))), Dst: dst}
	}
	return out
}

func endpoints(prefix string, weights ...uint8) []Endpoint {
	out := make([]Endpoint, len(weights))
	for i, w := range weights {
		out[i] = Endpoint{ID: fmt.Sprintf("%s%d", prefix, i), Weight: w}
	}
	return out
}

func equal(prefix string, n int) []Endpoint {
	w := make([]uint8, n)
	for i := range w {
		w[i] = 100
	}
	return endpoints(prefix, w...)
}

// share counts choices per "region/endpoint" and per region.
func share(t *testing.T, tb *Table, fs []Flow, v View) (byEndpoint, byRegion map[string]int) {
	t.Helper()
	byEndpoint, byRegion = map[string]int{}, map[string]int{}
	for _, f := range fs {
		c, err := tb.Pick(f, v, nil)
		if err != nil {
			t.Fatalf("pick %v: %v", f, err)
		}
		byEndpoint[c.Region+"/"+c.EndpointID]++
		byRegion[c.Region]++
	}
	return byEndpoint, byRegion
}

func within(t *testing.T, what string, got, n int, want, tol float64) {
	t.Helper()
	p := 100 * float64(got) / float64(n)
	if p < want-tol || p > want+tol {
		t.Errorf("%s: %.2f%% of flows, want %.1f±%.1f", what, p, want, tol)
	}
}

func TestWeightedShares(t *testing.T) {
	weights := []uint8{1, 2, 3, 4, 0}
	for _, aff := range []Affinity{AffinityNone, AffinitySourceIP} {
		t.Run(aff.String(), func(t *testing.T) {
			tb := mustCompile(t, Listener{Key: "a/tcp/443", Affinity: aff, Groups: []Group{
				{Region: "eu", TrafficDial: 100, Endpoints: endpoints("e", weights...)},
			}})
			const n = 10000
			v := newView(map[string]time.Duration{"eu": ms(10)})
			got, _ := share(t, tb, flows(n, 1), v)
			for i, w := range weights {
				id := fmt.Sprintf("eu/e%d", i)
				if w == 0 {
					if got[id] != 0 {
						t.Errorf("%s has weight 0 but got %d flows", id, got[id])
					}
					continue
				}
				within(t, id, got[id], n, 100*float64(w)/10, 3)
			}
		})
	}
}

func TestWeightedSharesLarge(t *testing.T) {
	// Weights far apart exercise the float comparison; equal ones the hash one.
	weights := []uint8{255, 255, 1, 50, 128}
	tb := mustCompile(t, Listener{Groups: []Group{{Region: "eu", TrafficDial: 100, Endpoints: endpoints("e", weights...)}}})
	const n = 20000
	got, _ := share(t, tb, flows(n, 2), newView(map[string]time.Duration{"eu": 0}))
	sum := 0
	for _, w := range weights {
		sum += int(w)
	}
	for i, w := range weights {
		within(t, fmt.Sprintf("e%d", i), got[fmt.Sprintf("eu/e%d", i)], n, 100*float64(w)/float64(sum), 2)
	}
}

func TestTrafficDial(t *testing.T) {
	const n = 10000
	v := newView(map[string]time.Duration{"near": ms(5), "mid": ms(50), "far": ms(150)})
	tests := []struct {
		name  string
		dials map[string]int
		want  map[string]float64 // percent per region
	}{
		{"30 on nearest", map[string]int{"near": 30, "mid": 100}, map[string]float64{"near": 30, "mid": 70}},
		{"0 on nearest", map[string]int{"near": 0, "mid": 100}, map[string]float64{"mid": 100}},
		// 30% near; of the other 70%, half refused by mid fall back to near.
		{"refused by all go nearest", map[string]int{"near": 30, "mid": 50}, map[string]float64{"near": 65, "mid": 35}},
		{"three groups", map[string]int{"near": 50, "mid": 50, "far": 100}, map[string]float64{"near": 50, "mid": 25, "far": 25}},
		{"refused by all skip dial 0", map[string]int{"near": 0, "mid": 20, "far": 50}, map[string]float64{"mid": 60, "far": 40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gs []Group
			for r, d := range tt.dials {
				gs = append(gs, Group{Region: r, TrafficDial: d, Endpoints: equal(r, 3)})
			}
			tb := mustCompile(t, Listener{Groups: gs})
			_, got := share(t, tb, flows(n, 3), v)
			for r := range tt.dials {
				within(t, r, got[r], n, tt.want[r], 3)
			}
		})
	}
}

func TestTrafficDialAllZero(t *testing.T) {
	tb := mustCompile(t, Listener{Groups: []Group{
		{Region: "a", TrafficDial: 0, Endpoints: equal("a", 2)},
		{Region: "b", TrafficDial: 0, Endpoints: equal("b", 2)},
	}})
	v := newView(map[string]time.Duration{"a": ms(1), "b": ms(2)})
	for _, f := range flows(100, 4) {
		if c, err := tb.Pick(f, v, nil); !errors.Is(err, ErrNoRoute) {
			t.Fatalf("pick = %+v, %v; want ErrNoRoute", c, err)
		}
	}
}

func TestAffinity(t *testing.T) {
	src := netip.MustParseAddr("198.51.100.7")
	dst := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.10"), 443)
	v := newView(map[string]time.Duration{"eu": ms(10), "us": ms(80)})
	gs := []Group{
		{Region: "eu", TrafficDial: 50, Endpoints: equal("eu", 10)},
		{Region: "us", TrafficDial: 100, Endpoints: equal("us", 10)},
	}
	pickAll := func(aff Affinity) map[Choice]int {
		tb := mustCompile(t, Listener{Affinity: aff, Groups: gs})
		got := map[Choice]int{}
		for port := 1024; port < 2024; port++ {
			c, err := tb.Pick(Flow{Proto: 6, Src: netip.AddrPortFrom(src, uint16(port)), Dst: dst}, v, nil)
			if err != nil {
				t.Fatal(err)
			}
			got[c]++
		}
		return got
	}
	if got := pickAll(AffinitySourceIP); len(got) != 1 {
		t.Errorf("source_ip: one client went to %d endpoints: %v", len(got), got)
	}
	// 1,000 flows over 20 endpoints: every one should be hit.
	if got := pickAll(AffinityNone); len(got) != 20 {
		t.Errorf("none: one client's flows reached %d endpoints, want 20: %v", len(got), got)
	}
}

func TestIPv4Mapped(t *testing.T) {
	tb := mustCompile(t, Listener{Groups: []Group{{Region: "eu", TrafficDial: 100, Endpoints: equal("e", 10)}}})
	v := newView(map[string]time.Duration{"eu": 0})
	for _, f := range flows(200, 5) {
		m := f
		m.Src = netip.AddrPortFrom(netip.AddrFrom16(f.Src.Addr().As16()), f.Src.Port())
		m.Dst = netip.AddrPortFrom(netip.AddrFrom16(f.Dst.Addr().As16()), f.Dst.Port())
		a, _ := tb.Pick(f, v, nil)
		b, _ := tb.Pick(m, v, nil)
		if a != b {
			t.Fatalf("%v -> %v but %v -> %v", f, a, m, b)
		}
	}
}

// assign returns each flow's endpoint ID.
func assign(t *testing.T, tb *Table, fs []Flow, v View) []string {
	t.Helper()
	out := make([]string, len(fs))
	for i, f := range fs {
		c, err := tb.Pick(f, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = c.EndpointID
	}
	return out
}

func TestMinimalDisruption(t *testing.T) {
	const n = 10000
	fs := flows(n, 6)
	v := newView(map[string]time.Duration{"eu": 0})
	ten := equal("e", 10)
	before := assign(t, mustCompile(t, Listener{Groups: []Group{{Region: "eu", TrafficDial: 100, Endpoints: ten}}}), fs, v)

	// moved checks that at most 15% of flows changed endpoint and that every
	// change is allowed by ok(from, to).
	moved := func(t *testing.T, from, to []string, ok func(a, b string) bool) {
		t.Helper()
		m := 0
		for i := range from {
			if from[i] == to[i] {
				continue
			}
			m++
			if !ok(from[i], to[i]) {
				t.Fatalf("flow %d moved %s -> %s", i, from[i], to[i])
			}
		}
		if m > n*15/100 || m == 0 {
			t.Errorf("%d of %d flows moved, want (0, 15%%]", m, n)
		}
	}

	t.Run("remove from config", func(t *testing.T) {
		nine := append(append([]Endpoint{}, ten[:3]...), ten[4:]...)
		after := assign(t, mustCompile(t, Listener{Groups: []Group{{Region: "eu", TrafficDial: 100, Endpoints: nine}}}), fs, v)
		moved(t, before, after, func(a, _ string) bool { return a == "e3" })
		// Adding it back restores every flow.
		back := assign(t, mustCompile(t, Listener{Groups: []Group{{Region: "eu", TrafficDial: 100, Endpoints: ten}}}), fs, v)
		moved(t, after, back, func(_, b string) bool { return b == "e3" })
	})
	t.Run("unhealthy", func(t *testing.T) {
		tb := mustCompile(t, Listener{Groups: []Group{{Region: "eu", TrafficDial: 100, Endpoints: ten}}})
		sick := newView(v.rtt, "eu/e7")
		moved(t, before, assign(t, tb, fs, sick), func(a, _ string) bool { return a == "e7" })
	})
	t.Run("drain to weight 0", func(t *testing.T) {
		drained := append([]Endpoint{}, ten...)
		drained[5].Weight = 0
		after := assign(t, mustCompile(t, Listener{Groups: []Group{{Region: "eu", TrafficDial: 100, Endpoints: drained}}}), fs, v)
		moved(t, before, after, func(a, _ string) bool { return a == "e5" })
	})
	t.Run("add an eleventh", func(t *testing.T) {
		eleven := append(append([]Endpoint{}, ten...), Endpoint{ID: "e10", Weight: 100})
		after := assign(t, mustCompile(t, Listener{Groups: []Group{{Region: "eu", TrafficDial: 100, Endpoints: eleven}}}), fs, v)
		moved(t, before, after, func(_, b string) bool { return b == "e10" })
	})
}

func TestDeterministicAcrossEdges(t *testing.T) {
	cfg := func(reverse bool) Listener {
		gs := []Group{
			{Region: "eu", TrafficDial: 40, Endpoints: endpoints("eu", 10, 20, 30, 40, 0, 255)},
			{Region: "us", TrafficDial: 100, Preference: 0, Endpoints: equal("us", 7)},
		}
		if reverse { // another edge may list things in another order
			gs[0], gs[1] = gs[1], gs[0]
			for _, g := range gs {
				for i, j := 0, len(g.Endpoints)-1; i < j; i, j = i+1, j-1 {
					g.Endpoints[i], g.Endpoints[j] = g.Endpoints[j], g.Endpoints[i]
				}
			}
		}
		return Listener{Key: "acc/tcp/443", Groups: gs}
	}
	edge1, edge2 := mustCompile(t, cfg(false)), mustCompile(t, cfg(true))
	v := newView(map[string]time.Duration{"eu": ms(20), "us": ms(90)}, "us/us3")
	for _, f := range flows(10000, 7) {
		a, errA := edge1.Pick(f, v, nil)
		b, errB := edge2.Pick(f, v, nil)
		if a != b || errA != nil || errB != nil {
			t.Fatalf("flow %v: edge1 %+v %v, edge2 %+v %v", f, a, errA, b, errB)
		}
	}
}

// TestHashStable pins the hash functions: every node of a fleet, of every
// version that may run side by side, must compute the same values.
func TestHashStable(t *testing.T) {
	f := Flow{
		Proto: 17,
		Src:   netip.MustParseAddrPort("198.51.100.7:40000"),
		Dst:   netip.MustParseAddrPort("[2001:db8::1]:53"),
	}
	got := []uint64{
		hashString(seedEndpoint, "i-0abc"),
		hashString(seedRegion, "eu-west-1"),
		flowHash(AffinityNone, f),
		flowHash(AffinitySourceIP, f),
	}
	want := []uint64{0x49ae298ea7d59126, 0x3013962a6d13a6df, 0x453a5bff191ee656, 0x6829b72aa3ac6dd5}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("hash %d = %#x, want %#x", i, got[i], want[i])
		}
	}
}

func TestPick(t *testing.T) {
	one := func(id string) []Endpoint { return []Endpoint{{ID: id, Weight: 1}} }
	f := Flow{Proto: 6, Src: netip.MustParseAddrPort("198.51.100.7:40000"), Dst: netip.MustParseAddrPort("203.0.113.10:443")}
	tests := []struct {
		name     string
		groups   []Group
		rtt      map[string]time.Duration
		down     []string // "region/id"
		exclude  []string // "region" or "region/id"
		want     Choice
		wantErr  error
		aff      Affinity
		nilGroup bool
	}{
		{
			name:   "nearest by rtt",
			groups: []Group{{Region: "b", TrafficDial: 100, Endpoints: one("b1")}, {Region: "a", TrafficDial: 100, Endpoints: one("a1")}},
			rtt:    map[string]time.Duration{"a": ms(80), "b": ms(10)},
			want:   Choice{Region: "b", EndpointID: "b1"},
		},
		{
			name: "preference before rtt",
			groups: []Group{
				{Region: "near", TrafficDial: 100, Preference: 2, Endpoints: one("n")},
				{Region: "far", TrafficDial: 100, Preference: 1, Endpoints: one("f")},
			},
			rtt:  map[string]time.Duration{"near": ms(1), "far": ms(200)},
			want: Choice{Region: "far", EndpointID: "f"},
		},
		{
			name: "preference set before unset",
			groups: []Group{
				{Region: "near", TrafficDial: 100, Endpoints: one("n")},
				{Region: "far", TrafficDial: 100, Preference: 9, Endpoints: one("f")},
			},
			rtt:  map[string]time.Duration{"near": ms(1), "far": ms(200)},
			want: Choice{Region: "far", EndpointID: "f"},
		},
		{
			name: "equal preference then rtt",
			groups: []Group{
				{Region: "far", TrafficDial: 100, Preference: 1, Endpoints: one("f")},
				{Region: "near", TrafficDial: 100, Preference: 1, Endpoints: one("n")},
			},
			rtt:  map[string]time.Duration{"near": ms(1), "far": ms(200)},
			want: Choice{Region: "near", EndpointID: "n"},
		},
		{
			name:   "rtt tie by region name",
			groups: []Group{{Region: "zz", TrafficDial: 100, Endpoints: one("z")}, {Region: "aa", TrafficDial: 100, Endpoints: one("a")}},
			rtt:    map[string]time.Duration{"aa": ms(5), "zz": ms(5)},
			want:   Choice{Region: "aa", EndpointID: "a"},
		},
		{
			name:   "unreachable skipped",
			groups: []Group{{Region: "a", TrafficDial: 100, Endpoints: one("a1")}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}},
			rtt:    map[string]time.Duration{"b": ms(100)},
			want:   Choice{Region: "b", EndpointID: "b1"},
		},
		{
			name:   "no healthy endpoint skipped",
			groups: []Group{{Region: "a", TrafficDial: 100, Endpoints: equal("a", 3)}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}},
			rtt:    map[string]time.Duration{"a": ms(1), "b": ms(100)},
			down:   []string{"a/a0", "a/a1", "a/a2"},
			want:   Choice{Region: "b", EndpointID: "b1"},
		},
		{
			name:   "unhealthy endpoint skipped",
			groups: []Group{{Region: "a", TrafficDial: 100, Endpoints: equal("a", 3)}},
			rtt:    map[string]time.Duration{"a": ms(1)},
			down:   []string{"a/a0", "a/a2"},
			want:   Choice{Region: "a", EndpointID: "a1"},
		},
		{
			name:   "all weights zero skipped",
			groups: []Group{{Region: "a", TrafficDial: 100, Endpoints: endpoints("a", 0, 0)}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}},
			rtt:    map[string]time.Duration{"a": ms(1), "b": ms(100)},
			want:   Choice{Region: "b", EndpointID: "b1"},
		},
		{
			name:   "empty group skipped",
			groups: []Group{{Region: "a", TrafficDial: 100}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}},
			rtt:    map[string]time.Duration{"a": ms(1), "b": ms(100)},
			want:   Choice{Region: "b", EndpointID: "b1"},
		},
		{
			name:   "fail open to nearest reachable",
			groups: []Group{{Region: "a", TrafficDial: 100, Endpoints: one("a1")}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}, {Region: "c", TrafficDial: 100, Endpoints: one("c1")}},
			rtt:    map[string]time.Duration{"b": ms(50), "c": ms(100)},
			down:   []string{"a/a1", "b/b1", "c/c1"},
			want:   Choice{Region: "b", EndpointID: "b1", FailOpen: true},
		},
		{
			name:   "fail open ignores weight 0",
			groups: []Group{{Region: "a", TrafficDial: 100, Endpoints: []Endpoint{{ID: "x", Weight: 0}, {ID: "y", Weight: 1}}}},
			rtt:    map[string]time.Duration{"a": ms(1)},
			down:   []string{"a/x", "a/y"},
			want:   Choice{Region: "a", EndpointID: "y", FailOpen: true},
		},
		{
			name:   "healthy only in dial 0 group fails open",
			groups: []Group{{Region: "a", TrafficDial: 0, Endpoints: one("a1")}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}},
			rtt:    map[string]time.Duration{"a": ms(1), "b": ms(100)},
			down:   []string{"b/b1"},
			want:   Choice{Region: "b", EndpointID: "b1", FailOpen: true},
		},
		{
			name:    "all unreachable",
			groups:  []Group{{Region: "a", TrafficDial: 100, Endpoints: one("a1")}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}},
			rtt:     map[string]time.Duration{},
			wantErr: ErrNoRoute,
		},
		{
			name:    "no groups",
			rtt:     map[string]time.Duration{},
			wantErr: ErrNoRoute,
		},
		{
			name:    "only weight 0",
			groups:  []Group{{Region: "a", TrafficDial: 100, Endpoints: endpoints("a", 0, 0)}},
			rtt:     map[string]time.Duration{"a": 0},
			wantErr: ErrNoRoute,
		},
		{
			name:    "exclude endpoint",
			groups:  []Group{{Region: "a", TrafficDial: 100, Endpoints: equal("a", 2)}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}},
			rtt:     map[string]time.Duration{"a": ms(1), "b": ms(100)},
			exclude: []string{"a/a0"},
			want:    Choice{Region: "a", EndpointID: "a1"},
		},
		{
			name:    "exclude both endpoints moves region",
			groups:  []Group{{Region: "a", TrafficDial: 100, Endpoints: equal("a", 2)}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}},
			rtt:     map[string]time.Duration{"a": ms(1), "b": ms(100)},
			exclude: []string{"a/a0", "a/a1"},
			want:    Choice{Region: "b", EndpointID: "b1"},
		},
		{
			name:    "exclude region",
			groups:  []Group{{Region: "a", TrafficDial: 100, Endpoints: equal("a", 2)}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}},
			rtt:     map[string]time.Duration{"a": ms(1), "b": ms(100)},
			exclude: []string{"a"},
			want:    Choice{Region: "b", EndpointID: "b1"},
		},
		{
			name:    "exclude healthy then fail open",
			groups:  []Group{{Region: "a", TrafficDial: 100, Endpoints: equal("a", 2)}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}},
			rtt:     map[string]time.Duration{"a": ms(1), "b": ms(100)},
			down:    []string{"a/a1", "b/b1"},
			exclude: []string{"a/a0"},
			want:    Choice{Region: "a", EndpointID: "a1", FailOpen: true},
		},
		{
			name:    "exclude everything",
			groups:  []Group{{Region: "a", TrafficDial: 100, Endpoints: equal("a", 2)}, {Region: "b", TrafficDial: 100, Endpoints: one("b1")}},
			rtt:     map[string]time.Duration{"a": ms(1), "b": ms(100)},
			exclude: []string{"a", "b/b1"},
			wantErr: ErrNoRoute,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := mustCompile(t, Listener{Key: "acc/tcp/443", Affinity: tt.aff, Groups: tt.groups})
			v := newView(tt.rtt, tt.down...)
			var ex Exclude
			if tt.exclude != nil {
				set := map[string]bool{}
				for _, e := range tt.exclude {
					set[e] = true
				}
				ex = func(region, id string) bool {
					if id == "" {
						return set[region]
					}
					return set[region+"/"+id]
				}
			}
			got, err := tb.Pick(f, v, ex)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("pick = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestRetryWalk retries one flow until nothing is left: every endpoint of
// the nearest group, then the next group, each exactly once, healthy ones
// before failing open to unhealthy ones.
func TestRetryWalk(t *testing.T) {
	tb := mustCompile(t, Listener{Groups: []Group{
		{Region: "far", TrafficDial: 100, Endpoints: equal("f", 3)},
		{Region: "near", TrafficDial: 100, Endpoints: endpoints("n", 1, 2, 3, 0)},
	}})
	v := newView(map[string]time.Duration{"near": ms(1), "far": ms(90)}, "near/n1")
	for _, f := range flows(50, 8) {
		tried := map[string]bool{}
		ex := func(region, id string) bool { return tried[region+"/"+id] }
		var seq []string
		for {
			c, err := tb.Pick(f, v, ex)
			if errors.Is(err, ErrNoRoute) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			k := c.Region + "/" + c.EndpointID
			if tried[k] {
				t.Fatalf("%s picked twice: %v", k, seq)
			}
			if c.FailOpen != (k == "near/n1") {
				t.Fatalf("%s: FailOpen %v", k, c.FailOpen)
			}
			tried[k] = true
			seq = append(seq, k)
		}
		if len(seq) != 6 {
			t.Fatalf("walk %v, want 6 endpoints", seq)
		}
		for i, k := range seq {
			if wantNear := i < 2; strings.HasPrefix(k, "near/") != wantNear && i < 5 {
				t.Fatalf("walk %v: near group's healthy endpoints must come first", seq)
			}
		}
		if seq[5] != "near/n1" {
			t.Fatalf("walk %v: the unhealthy endpoint must come last", seq)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	ok := []Endpoint{{ID: "e", Weight: 1}}
	tests := []struct {
		name string
		l    Listener
		want string
	}{
		{"dial above 100", Listener{Groups: []Group{{Region: "a", TrafficDial: 101, Endpoints: ok}}}, "traffic dial 101"},
		{"dial below 0", Listener{Groups: []Group{{Region: "a", TrafficDial: -1, Endpoints: ok}}}, "traffic dial -1"},
		{"empty region", Listener{Groups: []Group{{TrafficDial: 100, Endpoints: ok}}}, "empty region"},
		{"duplicate region", Listener{Groups: []Group{{Region: "a", TrafficDial: 1}, {Region: "a", TrafficDial: 1}}}, `duplicate region "a"`},
		{"empty id", Listener{Groups: []Group{{Region: "a", Endpoints: []Endpoint{{Weight: 1}}}}}, "empty id"},
		{"duplicate id", Listener{Groups: []Group{{Region: "a", Endpoints: []Endpoint{{ID: "x"}, {ID: "x"}}}}}, `duplicate endpoint "x"`},
		{"affinity", Listener{Affinity: 7}, "unknown affinity(7)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.l.Key = "acc/tcp/80"
			_, err := Compile(tt.l)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "acc/tcp/80") {
				t.Fatalf("err = %v, want one mentioning %q and the listener", err, tt.want)
			}
		})
	}
	// Several problems are all reported.
	_, err := Compile(Listener{Groups: []Group{{Region: "a", TrafficDial: 200, Endpoints: []Endpoint{{}}}}})
	if err == nil || !strings.Contains(err.Error(), "traffic dial") || !strings.Contains(err.Error(), "empty id") {
		t.Fatalf("err = %v, want both problems", err)
	}
}

func TestCompileCopies(t *testing.T) {
	l := Listener{Groups: []Group{{Region: "a", TrafficDial: 100, Endpoints: []Endpoint{{ID: "x", Weight: 1}}}}}
	tb := mustCompile(t, l)
	l.Groups[0].Endpoints[0].ID = "changed"
	c, err := tb.Pick(flows(1, 9)[0], newView(map[string]time.Duration{"a": 0}), nil)
	if err != nil || c.EndpointID != "x" {
		t.Fatalf("pick = %+v, %v; the Table must not alias its input", c, err)
	}
}

func TestConcurrentPick(t *testing.T) {
	tb, v := benchTable(t)
	fs := flows(500, 12)
	want := make([]Choice, len(fs))
	for i, f := range fs {
		want[i], _ = tb.Pick(f, v, nil)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			for i, f := range fs {
				if c, _ := tb.Pick(f, v, nil); c != want[i] {
					errs <- fmt.Sprintf("flow %d: %+v, want %+v", i, c, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func benchTable(tb testing.TB) (*Table, View) {
	t := mustCompile(tb, Listener{Key: "acc/tcp/443", Groups: []Group{
		{Region: "eu", TrafficDial: 60, Endpoints: endpoints("eu", 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)},
		{Region: "us", TrafficDial: 100, Endpoints: equal("us", 10)},
	}})
	return t, newView(map[string]time.Duration{"eu": ms(20), "us": ms(90)}, "eu/eu3")
}

func TestPickAllocs(t *testing.T) {
	tb, v := benchTable(t)
	f := flows(1, 10)[0]
	if n := testing.AllocsPerRun(100, func() { _, _ = tb.Pick(f, v, nil) }); n != 0 {
		t.Fatalf("Pick allocates %v times", n)
	}
}

// staticView is a View that costs next to nothing, to measure Pick alone.
type staticView struct{}

func (staticView) RegionRTT(region string) (time.Duration, bool) {
	if region == "eu" {
		return ms(20), true
	}
	return ms(90), true
}

func (staticView) EndpointHealthy(region, id string) bool { return id != "eu3" }

// BenchmarkPick picks for 2 groups of 10 endpoints, the nearer one with
// mixed weights and a dial of 60, the other with equal weights.
func BenchmarkPick(b *testing.B) {
	tb, mv := benchTable(b)
	fs := flows(1024, 11)
	for _, bv := range []struct {
		name string
		v    View
	}{{"view=map", mv}, {"view=static", staticView{}}} {
		b.Run(bv.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := tb.Pick(fs[i&1023], bv.v, nil); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
