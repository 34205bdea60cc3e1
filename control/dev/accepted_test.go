package dev

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/internal/testport"
)

// TestAcceptedDocumentsStart: every document of the repository that the
// config package accepts and that can run on one machine (everything on
// loopback, every endpoint a loopback address with a port, so that the
// demo endpoints stand in for it) starts under anyedge dev, every node of
// it ready, on ports moved to free ones. control/node's
// TestAcceptedDocumentsBuild builds every node of the others.
func TestAcceptedDocumentsStart(t *testing.T) {
	var files []string
	for _, pattern := range []string{"../../configs/*.yaml", "../../configs/testdata/*.yaml", "../config/testdata/*.yaml"} {
		m, err := filepath.Glob(pattern)
		require.NoError(t, err)
		files = append(files, m...)
	}
	started := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		doc, err := config.Load(b, config.LoadOptions{Env: []string{}})
		if err != nil || !devable(doc) {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			movePorts(t, doc)
			require.NoError(t, doc.Validate())
			startDev(t, doc)
		})
		started++
	}
	require.GreaterOrEqual(t, started, 2, "quickstart.yaml and the UDP-only test document at least")
}

// devable reports whether every address of doc is a loopback address that
// anyedge dev can serve: accelerators, regions, and endpoints with a port
// on single-port listeners.
func devable(doc *config.Document) bool {
	loop := func(s string) bool {
		a, err := netip.ParseAddr(s)
		return err == nil && a.IsLoopback()
	}
	loopPort := func(s string) bool {
		ap, err := netip.ParseAddrPort(s)
		return err == nil && ap.Addr().IsLoopback()
	}
	for _, a := range doc.Accelerators {
		for _, ip := range a.IPAddresses {
			if !loop(ip) {
				return false
			}
		}
		for _, l := range a.Listeners {
			if l.Protocol != "tcp" && l.Protocol != "udp" {
				return false
			}
			for _, r := range l.PortRanges {
				if r.From != r.To {
					return false
				}
			}
			for _, g := range l.EndpointGroups {
				for _, e := range g.Endpoints {
					if !loopPort(e.Address) {
						return false
					}
				}
			}
		}
	}
	for _, r := range doc.Topology.Regions {
		if !loopPort(r.Backbone.Listen) || !loopPort(r.Backbone.Address) {
			return false
		}
	}
	if doc.DNS != nil {
		for _, l := range doc.DNS.Listen {
			if !loopPort(l) {
				return false
			}
		}
	}
	for _, p := range doc.Topology.PoPs {
		for _, l := range p.DNSListen {
			if !loopPort(l) {
				return false
			}
		}
	}
	return len(doc.Topology.PoPs) > 0
}

// movePorts moves every port of doc to one free for TCP and UDP on
// 127.0.0.1, the same old port always to the same new one.
func movePorts(t *testing.T, doc *config.Document) {
	moved := map[int]int{}
	port := func(p int) int {
		if p == 0 {
			return 0
		}
		if n, ok := moved[p]; ok {
			return n
		}
		moved[p] = testport.Port(t)
		return moved[p]
	}
	addr := func(s string) string {
		host, p, err := net.SplitHostPort(s)
		require.NoError(t, err)
		n, err := strconv.Atoi(p)
		require.NoError(t, err)
		return net.JoinHostPort(host, strconv.Itoa(port(n)))
	}
	for ai := range doc.Accelerators {
		for li := range doc.Accelerators[ai].Listeners {
			l := &doc.Accelerators[ai].Listeners[li]
			for ri := range l.PortRanges {
				r := &l.PortRanges[ri]
				r.From = port(r.From)
				r.To = r.From
			}
			for gi := range l.EndpointGroups {
				g := &l.EndpointGroups[gi]
				g.HealthCheck.Port = port(g.HealthCheck.Port)
				for oi := range g.PortOverrides {
					o := &g.PortOverrides[oi]
					o.ListenerPort, o.EndpointPort = port(o.ListenerPort), port(o.EndpointPort)
				}
				for ei := range g.Endpoints {
					g.Endpoints[ei].Address = addr(g.Endpoints[ei].Address)
				}
			}
		}
	}
	for i := range doc.Topology.PoPs {
		p := &doc.Topology.PoPs[i]
		p.Admin = addr(p.Admin)
		for j := range p.DNSListen {
			p.DNSListen[j] = addr(p.DNSListen[j])
		}
	}
	if doc.DNS != nil {
		for j := range doc.DNS.Listen {
			doc.DNS.Listen[j] = addr(doc.DNS.Listen[j])
		}
	}
	for i := range doc.Topology.Regions {
		r := &doc.Topology.Regions[i]
		r.Admin = addr(r.Admin)
		r.Backbone.Listen, r.Backbone.Address = addr(r.Backbone.Listen), addr(r.Backbone.Address)
	}
}

// startDev runs doc under Run until every node is ready (Run prints its
// hints then), and stops it.
func startDev(t *testing.T, doc *config.Document) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &hintWriter{up: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Doc: doc, Version: "test", Out: out, Dashboard: "127.0.0.1:0"})
	}()
	select {
	case <-out.up:
	case err := <-done:
		t.Fatalf("anyedge dev stopped before it was up: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatalf("anyedge dev not up within 30 s (a node never became ready)")
	}
	requireProbed(t, doc)
	cancel()
	require.NoError(t, <-done)
}

// requireProbed waits until every region has probed each of its endpoints
// and requires them all healthy: a probe that cannot work for its
// listener (a TCP probe of a UDP-only endpoint) fails here, where
// readiness alone would not tell (an endpoint counts as healthy until its
// first probe).
func requireProbed(t *testing.T, doc *config.Document) {
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range doc.Topology.Regions {
		for {
			states := regionStates(t, r.Admin)
			probed := true
			for _, st := range states {
				probed = probed && st != "unknown"
			}
			if probed {
				for id, st := range states {
					require.Equal(t, "healthy", st, "region %s, endpoint %s", r.Name, id)
				}
				break
			}
			require.True(t, time.Now().Before(deadline), "region %s: endpoints not probed within 30 s: %v", r.Name, states)
			time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
		}
	}
}

// regionStates reads the state of every endpoint from a region's /status.
func regionStates(t *testing.T, admin string) map[string]string {
	resp, err := http.Get("http://" + admin + "/status")
	require.NoError(t, err)
	defer resp.Body.Close()
	var st struct {
		Endpoints []struct{ ID, State string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	out := map[string]string{}
	for _, e := range st.Endpoints {
		out[e.ID] = e.State
	}
	return out
}

// hintWriter closes up when Run has printed its hints: every node serves.
type hintWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	up   chan struct{}
	once sync.Once
}

func (w *hintWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), "anyedge dev is up") {
		w.once.Do(func() { close(w.up) })
	}
	return len(p), nil
}
