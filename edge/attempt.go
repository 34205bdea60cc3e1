package edge

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/wire"
	"github.com/anyedge/anyedge/edge/router"
)

// Setting a flow up: which region and endpoint, what travels with the
// header, and when to try elsewhere.
//
// The router's first choice is tried inline. A refusal (failed endpoint
// dial) or an unreachable region moves on to the next choice at once, and
// an answer that is slow to come (a black-holed endpoint, a region that
// died silently) starts a hedged attempt in parallel after the hedge
// delay; the first attempt answered OK wins and the others are cancelled.
//
// What travels before an answer: with early data off, nothing. Otherwise,
// towards a region that serves held streams (wire.FlagHold), every byte
// the client sent: the region names the flow's candidate endpoints of its
// group, hedges and retries among them itself, and delivers the bytes to
// exactly one. Such a flow is "unsafe" once it has sent more than a
// replay-safe prefix (a TLS ClientHello, or anything under
// `early_data: always`): then no other attempt is started while it waits,
// and it is given up for another region only when its region refused it
// (nothing was delivered) or has been silent since it started (no packet,
// not even the acknowledgement a live region sends within one RTT). An
// unsafe attempt that fails in any other way fails the flow: its region
// heard it and may have delivered it. Towards a region without held
// streams only the replay-safe prefix travels early and the edge hedges
// among endpoints itself, as before held delivery existed.

// attempt is one try to open a flow to a region.
type attempt struct {
	choice router.Choice
	str    backbone.Stream
	err    error
	sent   int      // early bytes sent on str before the answer
	cands  []string // held: the candidates named, choice.EndpointID first
	// slow are the candidates the region passed over before the winner
	// (held streams), for suspicion.
	slow []string
	// started is when the attempt's stream opened.
	started time.Time
}

// settle records which candidate of a held attempt won.
func (a *attempt) settle(winner int) {
	if a.cands == nil || winner <= 0 || winner >= len(a.cands) {
		return
	}
	a.slow = a.cands[:winner]
	a.choice.EndpointID = a.cands[winner]
}

// errAbandoned ends an attempt the edge gave up on: its region stayed
// silent, so the flow moved elsewhere.
var errAbandoned = errors.New("region silent since the attempt started; moved on")

// attemptHeader returns the header of an attempt on choice, and for a held
// attempt its candidates: the choice's endpoint and the next ones of its
// group in the flow's rendezvous order. An attempt is held when hold is
// set, the listener is not custom routing (one destination, nothing to
// hedge) and the region serves held streams. The header carries the
// client's TLS fields (base's, when the edge terminated its TLS) only to a
// region that reads them.
func (e *Edge) attemptHeader(bl *boundListener, f router.Flow, base wire.Header, choice router.Choice, hold bool) (wire.Header, []string) {
	h := base
	h.EndpointID = choice.EndpointID
	h.Flags &^= wire.FlagHold
	h.Alternates, h.HedgeDelay = nil, 0
	if h.Flags&wire.FlagTLS != 0 && !e.regions().Offers(choice.Region, wire.CapTLS) {
		h.Flags &^= wire.FlagTLS
		h.SNI, h.ALPN, h.TLSVersion = "", "", 0
	}
	if !hold || bl.l.Custom != nil || !e.regions().Offers(choice.Region, wire.CapHold) {
		return h, nil
	}
	cands := []string{choice.EndpointID}
	for len(cands) <= min(MaxRetries, wire.MaxAlternates) {
		c, err := bl.table.Pick(f, e.view, func(region, id string) bool {
			return region != choice.Region || slices.Contains(cands, id)
		})
		if err != nil || c.Region != choice.Region {
			break
		}
		cands = append(cands, c.EndpointID)
	}
	h.Flags |= wire.FlagHold
	h.Alternates = cands[1:]
	h.HedgeDelay = e.cfg.HedgeDelay
	return h, cands
}

// answerWait bounds the wait for an attempt's answer: a held stream's
// region may still start its last candidate's dial wire.HoldBudget after
// its first.
func (e *Edge) answerWait(a *attempt) time.Duration {
	if a.cands != nil {
		return e.cfg.OpenTimeout + wire.HoldBudget
	}
	return e.cfg.OpenTimeout
}

// firstAttempt tries the router's first choice and waits up to the hedge
// delay for the region's answer, meanwhile reading and sending on the
// client's first bytes when ed (early data) allows. ok reports a final
// outcome: a stream answered OK, or no route at all. Otherwise the
// returned attempt is either failed (err set) or still pending (str set,
// err nil): the hedged path takes it from there.
func (e *Edge) firstAttempt(ctx context.Context, bl *boundListener, f router.Flow, hdr wire.Header, c net.Conn, ed *early) (attempt, bool) {
	choice, err := e.pickFirst(bl, f)
	if err != nil {
		e.rl.Warn("no route for flow", "listener", bl.l.Route.Key, "client", f.Src.String(), "err", err)
		return attempt{err: err}, true
	}
	a := attempt{choice: choice}
	var h wire.Header
	h, a.cands = e.attemptHeader(bl, f, hdr, choice, ed != nil)
	if a.cands != nil {
		ed.setHold()
	}
	first := ed.sendable()
	a.started = time.Now()
	a.str, a.err = e.regions().StartFlow(ctx, choice.Region, &h, first, e.cfg.OpenTimeout)
	if a.err != nil {
		return a, false
	}
	a.sent = len(first)
	deadline := time.Now().Add(e.hedgeDelay(choice.Region))
	var winner int
	if ed != nil && !ed.done {
		winner, err = e.awaitReading(ctx, c, &a, ed, deadline)
	} else {
		winner, err = backbone.AwaitWinner(ctx, a.str, deadline)
	}
	switch {
	case err == nil:
		a.settle(winner)
		return a, true
	case errors.Is(err, os.ErrDeadlineExceeded):
		return a, false // pending: hedge
	default:
		backbone.CancelFlow(a.str)
		a.str, a.err = backbone.Stream{}, err
		return a, false
	}
}

// awaitReading waits for a's answer until deadline like
// backbone.AwaitWinner, and meanwhile reads the client's first bytes into
// ed, sending on a's stream those ed allows. A client that fails stops the
// wait (ed.err is set).
func (e *Edge) awaitReading(ctx context.Context, c net.Conn, a *attempt, ed *early, deadline time.Time) (int, error) {
	type answer struct {
		winner int
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		w, err := backbone.AwaitWinner(ctx, a.str, deadline)
		// Wake the read below: the answer decides what happens next.
		_ = c.SetReadDeadline(aLongTimeAgo)
		answered <- answer{w, err}
	}()
	send := func() bool {
		if out := ed.sendable(); len(out) > a.sent {
			if _, err := a.str.Write(out[a.sent:]); err != nil {
				return false // the answer (or its absence) tells what went wrong
			}
			a.sent = len(out)
		}
		return true
	}
	for ed.read(c) && send() {
	}
	if ed.err == nil {
		send()
	} else {
		a.str.CancelRead(wire.StreamReset) // ends the wait now
	}
	r := <-answered
	_ = c.SetReadDeadline(time.Time{})
	return r.winner, r.err
}

// pickFirst picks a new flow's first choice, trying regions suspected of
// silence only when nothing else can take it.
func (e *Edge) pickFirst(bl *boundListener, f router.Flow) (router.Choice, error) {
	if e.view.nsilent.Load() > 0 {
		if c, err := bl.table.Pick(f, e.view, e.view.avoidSilent); err == nil {
			return c, nil
		}
	}
	return bl.table.Pick(f, e.view, nil)
}

// pending is an attempt whose answer hedged is waiting for.
type pending struct {
	choice router.Choice
	unsafe bool // it carries more than the replay-safe prefix
	// patient: no other attempt starts before then unless its region is
	// silent. A held attempt's region hedges among its candidates itself,
	// one hedge delay after another.
	patient time.Time
	cancel  context.CancelFunc
	// since is set once the attempt's stream is open.
	since atomic.Pointer[backbone.Silence]
	// abandoned: the flow moved on; its result is dropped. Only hedged's
	// goroutine reads and writes it.
	abandoned bool
}

// silent reports whether p's region has sent nothing since p started.
func (p *pending) silent() bool {
	s := p.since.Load()
	return s != nil && s.Silent()
}

// result is the outcome of a pending attempt.
type result struct {
	attempt
	p *pending
}

// hedged continues after a first attempt that failed or is slow: it keeps
// waiting for a pending first attempt while it tries further choices, at
// most MaxRetries more, none started after the retry budget. Every new
// attempt carries what ed allows before an answer (see the top of this
// file).
//
// Where the next attempt goes depends on why the last is slow. If its
// connection has heard nothing from the region since the attempt started
// (a live region acknowledges the header within one RTT, whatever its
// endpoint does), the region itself is silent: the next attempt goes to
// another region, and new flows try other regions first while the silence
// lasts. Otherwise the endpoint is slow, and the next attempt goes to the
// flow's next endpoint in the same region (at most two attempts per
// region) — or, for a held attempt, whose region hedges among its
// endpoints itself, to another region.
func (e *Edge) hedged(ctx context.Context, bl *boundListener, f router.Flow, hdr wire.Header, first attempt, ed *early) attempt {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	results := make(chan result, MaxRetries+1)
	tried := []router.Choice{first.choice}
	var unreachable, heldRegions []string
	heldIn := func(a attempt) {
		if a.cands != nil {
			heldRegions = append(heldRegions, a.choice.Region)
		}
	}
	heldIn(first)
	exclude := func(region, id string) bool {
		if slices.Contains(unreachable, region) || slices.Contains(heldRegions, region) {
			return true
		}
		pending := 0
		for _, t := range tried {
			if t.Region == region {
				if id != "" && t.EndpointID == id {
					return true
				}
				pending++
			}
		}
		// Two attempts in one region without success: try another region.
		return id == "" && pending >= 2
	}
	failed := func(a attempt) {
		// An unreachable region, and one that answered overloaded (at its
		// own flow limit), take no more attempts of this flow: the next
		// goes to another region.
		if !refusedByEndpoint(a.err) && actx.Err() == nil {
			unreachable = append(unreachable, a.choice.Region)
		}
		e.rl.Info("flow attempt failed", "client", f.Src.String(), "region", a.choice.Region,
			"endpoint", a.choice.EndpointID, "err", a.err)
	}
	var waiting []*pending // attempts started, not answered, not abandoned
	outstanding := 0       // results still to come
	last := attempt{choice: first.choice, err: first.err}
	watch := func(a attempt) *pending {
		p := &pending{choice: a.choice, unsafe: ed.unsafe(a.sent)}
		if len(a.cands) > 1 {
			p.patient = a.started.Add(e.hedgeDelay(a.choice.Region) + time.Duration(len(a.cands)-1)*e.cfg.HedgeDelay)
		}
		waiting = append(waiting, p)
		outstanding++
		return p
	}
	// silent moves the next attempt away from the regions whose pending
	// attempts have heard nothing from them, and gives up an unsafe
	// attempt whose region is silent (nothing it holds was delivered:
	// nothing reached the region, or it has not been heard since) when
	// another region can take the flow.
	silent := func() {
		for _, p := range slices.Clone(waiting) {
			since := p.since.Load()
			if since == nil || !(since.Silent() || since.Closed()) {
				continue
			}
			if !slices.Contains(unreachable, p.choice.Region) {
				unreachable = append(unreachable, p.choice.Region)
				if !since.Closed() {
					e.view.suspectRegion(p.choice.Region, *since)
					e.rl.Info("region suspected: silent since the flow started", "region", p.choice.Region,
						"for", e.cfg.SuspectFor)
				}
			}
			if p.unsafe && since.Silent() {
				if _, err := bl.table.Pick(f, e.view, exclude); err != nil {
					// Nowhere else to go: giving up on the silent region
					// cannot help the flow, and it may yet answer (its
					// silence may be a hedge delay shorter than its RTT).
					continue
				}
				p.abandoned = true
				p.cancel()
				waiting = slices.DeleteFunc(waiting, func(q *pending) bool { return q == p })
				last = attempt{choice: p.choice, err: errAbandoned}
				e.rl.Info("held flow moved: its region is silent", "client", f.Src.String(), "region", p.choice.Region)
			}
		}
	}
	// run waits for a's answer in a goroutine of its own.
	run := func(a attempt, p *pending, open func(context.Context) (attempt, bool)) {
		pctx, pcancel := context.WithCancel(actx)
		p.cancel = pcancel
		if open == nil {
			since := a.str.Silence()
			p.since.Store(&since)
		}
		e.wg.Go(func() {
			defer pcancel()
			if open != nil {
				var ok bool
				if a, ok = open(pctx); !ok {
					results <- result{a, p}
					return
				}
				since := a.str.Silence()
				p.since.Store(&since)
			}
			var winner int
			winner, a.err = backbone.AwaitWinner(pctx, a.str, time.Now().Add(e.answerWait(&a)))
			if a.err != nil {
				backbone.CancelFlow(a.str)
				a.str = backbone.Stream{}
			} else {
				a.settle(winner)
			}
			results <- result{a, p}
		})
	}
	if first.err != nil {
		failed(first)
	} else {
		run(first, watch(first), nil)
	}
	launched := 1
	launch := func() bool {
		if launched > MaxRetries || time.Since(start) > e.cfg.RetryBudget || actx.Err() != nil {
			return false
		}
		for _, p := range waiting {
			if p.unsafe {
				return false // it alone may deliver what it carries
			}
			if time.Now().Before(p.patient) && !p.silent() {
				return false // its region is still hedging among its endpoints
			}
		}
		choice, err := bl.table.Pick(f, e.view, exclude)
		if err != nil {
			return false
		}
		bl.meter.Retry()
		launched++
		tried = append(tried, choice)
		h, cands := e.attemptHeader(bl, f, hdr, choice, ed != nil && ed.hold)
		early := ed.sendable()
		a := attempt{choice: choice, sent: len(early), cands: cands, started: time.Now()}
		heldIn(a)
		run(a, watch(a), func(pctx context.Context) (attempt, bool) {
			a.str, a.err = e.regions().StartFlow(pctx, choice.Region, &h, early, e.cfg.OpenTimeout)
			return a, a.err == nil
		})
		return true
	}
	// Either the first attempt failed, or its hedge delay has already
	// passed in firstAttempt: the next attempt starts now.
	silent()
	if launch() && first.err == nil {
		bl.meter.Hedge()
	}
	hedge := time.NewTimer(e.hedgeDelay(tried[len(tried)-1].Region))
	defer hedge.Stop()
	var won *attempt
	var gaveUp bool // an unsafe attempt failed after its region heard it
	for len(waiting) > 0 && won == nil && !gaveUp {
		select {
		case r := <-results:
			outstanding--
			if r.p.abandoned {
				if r.err == nil {
					backbone.CancelFlow(r.str) // answered just after it was given up
				}
				continue
			}
			waiting = slices.DeleteFunc(waiting, func(q *pending) bool { return q == r.p })
			if r.err == nil {
				won = &r.attempt
				break
			}
			last = r.attempt
			var refused *wire.RefusedError
			if r.p.unsafe && r.p.since.Load() != nil && !errors.As(r.err, &refused) && !r.p.silent() {
				// Its region heard the flow and did not refuse it: what it
				// carried may have been delivered. It must not go
				// anywhere else.
				gaveUp = true
				e.rl.Info("held flow failed: its region may have delivered it", "client", f.Src.String(),
					"region", r.choice.Region, "err", r.err)
				break
			}
			failed(r.attempt)
			if launch() {
				hedge.Reset(e.hedgeDelay(tried[len(tried)-1].Region))
			}
		case <-hedge.C:
			silent()
			if launch() {
				bl.meter.Hedge()
			}
			hedge.Reset(e.hedgeDelay(tried[len(tried)-1].Region))
		}
		if len(waiting) == 0 && won == nil && !gaveUp && launch() {
			hedge.Reset(e.hedgeDelay(tried[len(tried)-1].Region))
		}
	}
	if won != nil && first.err == nil && won.choice != first.choice && !slices.Contains(unreachable, first.choice.Region) {
		// The first attempt was still pending when another won, and its
		// region was not silent: new flows avoid its endpoint for a while
		// instead of each waiting for it.
		e.view.suspect(first.choice.Region, first.choice.EndpointID)
		e.rl.Info("endpoint suspected: answer slower than a hedge", "region", first.choice.Region,
			"endpoint", first.choice.EndpointID, "for", e.cfg.SuspectFor)
	}
	if outstanding > 0 {
		// Losers: cancel them and release whatever they opened.
		cancel()
		n := outstanding
		e.wg.Go(func() {
			for range n {
				if r := <-results; r.err == nil {
					backbone.CancelFlow(r.str)
				}
			}
		})
	}
	if won == nil {
		if last.err == nil {
			last.err = router.ErrNoRoute
		}
		return last
	}
	return *won
}

// hedgeDelay is how long to wait for an attempt's answer from region
// before starting another in parallel: the configured base plus twice the
// region's RTT, so that a distant but healthy region is not hedged
// against on every flow.
func (e *Edge) hedgeDelay(region string) time.Duration {
	d := e.cfg.HedgeDelay
	if rtt, ok := e.regions().RegionRTT(region); ok {
		d += 2 * rtt
	}
	return d
}

// refusedByEndpoint reports whether err is the region's refusal for the
// flow's endpoint (a failed dial and the like), after which another
// endpoint of the same region may still serve it; false for an
// unreachable region and for a region that is overloaded as a whole.
func refusedByEndpoint(err error) bool {
	var refused *wire.RefusedError
	return errors.As(err, &refused) && refused.Code != wire.CodeOverloaded
}
