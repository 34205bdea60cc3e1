package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/control/config"
	"github.com/anyedge/anyedge/edge"
	"github.com/anyedge/anyedge/edge/anycast"
	"github.com/anyedge/anyedge/edge/flow"
	"github.com/anyedge/anyedge/edge/udp"
)

// clientRun is a running backbone client: its Run and the goroutine that
// passes its changes on to the supervisor.
type clientRun struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startClient runs c in the backbone stage until stopClient or the
// stage's end. The supervisor (or runEdge before it) calls it.
func (en *edgeNode) startClient(c *backbone.Client) {
	ctx, cancel := context.WithCancel(en.bb.ctx)
	run := &clientRun{cancel: cancel}
	en.clients[c] = run
	run.wg.Add(2)
	en.bb.Go(func(context.Context) error {
		defer run.wg.Done()
		return c.Run(ctx)
	})
	en.bb.Go(func(context.Context) error {
		defer run.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-c.Changes():
				select {
				case en.changes <- struct{}{}:
				default:
				}
			}
		}
	})
	if en.said != nil {
		c.SetEdgeState(*en.said) // what the others were told
	}
}

// stopClient stops a client started by startClient and waits for it: its
// connections close, and with them the streams still open.
func (en *edgeNode) stopClient(c *backbone.Client) {
	run := en.clients[c]
	if run == nil {
		return
	}
	delete(en.clients, c)
	run.cancel()
	run.wg.Wait()
}

// apply is the edge's compile, prepare and commit of a reload (see
// reload.go): the document with the overrides laid over it becomes each
// component's new configuration. Until the commit nothing is in force,
// and an error undoes what was prepared. It returns what changed, for
// the log.
func (en *edgeNode) apply(doc *config.Document, n config.Node) (string, error) {
	old := en.live.Load()
	plan, err := compileEdge(en.cfg.effective(doc), n, en.log)
	if err != nil {
		return "", err
	}
	live := &edgeLive{doc: plan.doc, n: plan.n, accels: plan.accels, custom: plan.custom,
		listeners: plan.listeners, endpoints: plan.endpoints, regions: edge.Regions{}}
	// A listener keeps its meter (its counters) across reloads, and a
	// removed one too, in removed.
	meters := map[string]edge.Listener{}
	for _, l := range slices.Concat(old.listeners, old.removed) {
		meters[l.Protocol+" "+l.Route.Key] = l
	}
	var newMeters []*flow.Meter
	for i := range live.listeners {
		l := &live.listeners[i]
		key := l.Protocol + " " + l.Route.Key
		if prev, ok := meters[key]; ok {
			l.Meter = prev.Meter
			delete(meters, key)
			continue
		}
		l.Meter = flow.NewMeter(flow.Listener{Key: l.Route.Key, Accelerator: l.Accelerator, Protocol: l.Protocol}, nil)
		newMeters = append(newMeters, l.Meter)
	}
	for _, l := range slices.Concat(old.listeners, old.removed) {
		if _, gone := meters[l.Protocol+" "+l.Route.Key]; gone {
			live.removed = append(live.removed, l)
		}
	}
	// A region keeps its pool; a new region gets one, started at the
	// commit (its settings are those the edge started with).
	var added []*backbone.Client
	for _, r := range plan.regions {
		c := old.regions[r.Name]
		if c == nil {
			if c, err = en.newClient(r, en.pop, plan.custom); err != nil {
				return "", err
			}
			added = append(added, c)
		}
		live.regions[r.Name] = c
		live.clients = append(live.clients, c)
	}
	releaseAddrs, err := en.bindAddrs(live.listeners)
	if err != nil {
		return "", err
	}
	tu, err := en.e.Prepare(live.listeners, live.regions)
	if err != nil {
		releaseAddrs()
		return "", err
	}
	uu, err := en.fwd.Prepare(udpListeners(live.listeners), live.regions)
	if err != nil {
		tu.Abort()
		releaseAddrs()
		return "", err
	}

	// Commit: from here on nothing fails.
	if en.flowLogs != nil {
		for _, m := range newMeters {
			m.SetSink(en.flowLogs)
		}
	}
	for _, c := range added {
		en.startClient(c)
	}
	for _, c := range live.clients {
		c.SetCustomRules(plan.custom.customRules())
	}
	tc, uc := tu.Commit(), uu.Commit()
	en.fwd.SetLimits(n.PoP.UDP.MaxFlows, n.PoP.UDP.MaxFlowsPerSource)
	en.live.Store(live)
	var removed []string
	for _, c := range old.clients {
		if live.regions[c.Region()] != c {
			en.stopClient(c) // its flows were cut above: endpoint_removed
			removed = append(removed, c.Region())
		}
	}
	en.unbindAddrs(live.listeners)
	if en.dns != nil && plan.zone != nil {
		en.dns.setZone(plan.doc, plan.zone)
	}
	return changeSummary(tc, uc, added, removed), nil
}

// changeSummary says what a reload changed, for the log.
func changeSummary(tc edge.Changes, uc udp.Changes, added []*backbone.Client, removed []string) string {
	var parts []string
	if n := len(tc.Added) + len(uc.Added); n > 0 {
		parts = append(parts, fmt.Sprintf("%d sockets bound", n))
	}
	if n := len(tc.Removed) + len(uc.Removed); n > 0 {
		parts = append(parts, fmt.Sprintf("%d sockets closed", n))
	}
	for _, r := range []flow.Reason{flow.ListenerRemoved, flow.EndpointRemoved} {
		if n := tc.Cut[r] + uc.Cut[r]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d flows cut (%s)", n, r))
		}
	}
	for _, c := range added {
		parts = append(parts, "region "+c.Region()+" added")
	}
	for _, r := range removed {
		parts = append(parts, "region "+r+" removed")
	}
	if len(parts) == 0 {
		return "routing tables"
	}
	return "routing tables, " + strings.Join(parts, ", ")
}

// listenAddrs lists the addresses the listeners bind.
func listenAddrs(ls []edge.Listener) []netip.Addr {
	var out []netip.Addr
	for _, l := range ls {
		for _, a := range l.Addrs {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// bindAddrs, when the edge manages its anycast addresses, adds those of
// listeners it has not added yet to lo; the returned func takes them
// away again (a failed reload).
func (en *edgeNode) bindAddrs(ls []edge.Listener) (undo func(), err error) {
	if !en.pop.BGP.ManageAddresses {
		return func() {}, nil
	}
	var added []netip.Addr
	undo = func() {
		for _, a := range added {
			en.releaseAddr(a)
		}
	}
	for _, a := range listenAddrs(ls) {
		if en.anycast[a] != nil {
			continue
		}
		release, err := anycast.Bind("lo", []netip.Addr{a})
		if err != nil {
			undo()
			return nil, err
		}
		en.anycast[a] = release
		added = append(added, a)
	}
	return undo, nil
}

// unbindAddrs takes away the anycast addresses the edge added that ls no
// longer listens on.
func (en *edgeNode) unbindAddrs(ls []edge.Listener) {
	keep := listenAddrs(ls)
	for a := range en.anycast {
		if !slices.Contains(keep, a) {
			en.releaseAddr(a)
		}
	}
}

func (en *edgeNode) releaseAddr(a netip.Addr) {
	if release := en.anycast[a]; release != nil {
		if err := release(); err != nil {
			en.log.Warn("anycast addresses", "err", err)
		}
		delete(en.anycast, a)
	}
}

// releaseAddrs takes away every anycast address the edge added (exit).
func (en *edgeNode) releaseAddrs() error {
	var errs []error
	for a, release := range en.anycast {
		errs = append(errs, release())
		delete(en.anycast, a)
	}
	return errors.Join(errs...)
}
