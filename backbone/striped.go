package backbone

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyedge/anyedge/backbone/stripe"
	"github.com/anyedge/anyedge/backbone/wire"
)

// StripeConfig says when an edge stripes a TCP flow over several
// connections of the pool (see backbone/stripe and docs/backbone-protocol.md,
// "Striped flows").
type StripeConfig struct {
	// Lanes is how many connections one flow may use, its first included
	// (default 4; 1 turns striping off). At most the pool's size.
	Lanes int
	// After is how many bytes (either direction) a flow carries on its
	// first lane before the others join (default 256 KiB): short flows
	// never open a second stream.
	After int64
	// MinRTT: flows to a region nearer than this are not striped (default
	// 20 ms). On a short path one connection's window regrows within
	// milliseconds after a loss; striping pays where it takes seconds.
	MinRTT time.Duration
}

// Stripe defaults.
const (
	DefaultStripeLanes  = 4
	DefaultStripeAfter  = 256 << 10
	DefaultStripeMinRTT = 20 * time.Millisecond
)

func (sc *StripeConfig) setDefaults() {
	if sc.Lanes <= 0 {
		sc.Lanes = DefaultStripeLanes
	}
	if sc.After <= 0 {
		sc.After = DefaultStripeAfter
	}
	if sc.MinRTT <= 0 {
		sc.MinRTT = DefaultStripeMinRTT
	}
}

// stallAfter is how long a lane's oldest chunk may stay unacknowledged
// before it is sent again on the other lanes: well past a retransmission
// on a healthy path (several round trips), well before the connection's
// idle timeout.
func stallAfter(rtt time.Duration) time.Duration { return 4*rtt + 500*time.Millisecond }

// FlowStripeConfig is the stripe configuration of a flow on a backbone
// connection whose smoothed RTT is rtt; the region uses it for the flows
// edges stripe towards it.
func FlowStripeConfig(rtt time.Duration) stripe.Config {
	return stripe.Config{StallAfter: stallAfter(rtt), IsReset: isReset, ResetCode: wire.StreamReset}
}

// isReset tells a lane reset by the peer (the flow was reset) from a lane
// whose connection died.
func isReset(err error) bool {
	var se *quic.StreamError
	return errors.As(err, &se) && se.Remote
}

// CanStripe reports whether the region offered striped flows (its hello
// listed wire.CapStripe).
func (c *Client) CanStripe() bool { return c.stripeCap.Load() }

// striping reports whether a new TCP flow to this region is striped: the
// region said it can, the pool has room for a second lane, and the path is
// long enough for it to pay.
func (c *Client) striping() bool {
	if c.cfg.Stripe.Lanes < 2 || !c.stripeCap.Load() {
		return false
	}
	rtt, ok := c.RTT()
	return ok && rtt >= c.cfg.Stripe.MinRTT
}

// striped is the state of a striped flow at the edge, shared by the copies
// of its Stream. Until the region's answer the first stream carries the
// client's early bytes as stripe DATA frames; after an OK answer (start)
// everything goes through the stripe.
type striped struct {
	client *Client
	id     uint64
	// mu guards the fields below.
	mu    sync.Mutex
	conn  *stripe.Conn
	early []byte // sent before start
	lanes []Stream
}

func newStriped(c *Client) *striped {
	return &striped{client: c, id: rand.Uint64() | 1}
}

func (st *striped) started() *stripe.Conn {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.conn
}

// writeEarly frames p on the first stream before the answer. It holds mu
// while it writes, so that the stripe, which starts under mu, never writes
// the same stream at the same time.
func (st *striped) writeEarly(s *quic.Stream, p []byte) (int, error) {
	st.mu.Lock()
	if sc := st.conn; sc != nil {
		st.mu.Unlock()
		return sc.Write(p)
	}
	defer st.mu.Unlock()
	off := uint64(len(st.early))
	if _, err := s.Write(stripe.AppendData(nil, off, p)); err != nil {
		return 0, err
	}
	st.early = append(st.early, p...)
	return len(p), nil
}

// start begins striping on first once the region answered OK.
func (st *striped) start(first Stream) {
	c := st.client
	rtt, _ := c.RTT()
	st.mu.Lock()
	defer st.mu.Unlock()
	cfg := FlowStripeConfig(rtt)
	cfg.GrowAfter = c.cfg.Stripe.After
	cfg.Grow = func(sc *stripe.Conn) { st.grow(sc, first.slot) }
	cfg.Done = st.release
	cfg.Early = st.early
	st.conn = stripe.New(first.Stream, cfg)
	st.early = nil
}

// grow opens the flow's other lanes, each on another connection.
func (st *striped) grow(sc *stripe.Conn, first *slot) {
	c := st.client
	used := []*slot{first}
	for range c.cfg.Stripe.Lanes - 1 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := c.openStream(ctx, used)
		cancel()
		if err != nil {
			return // fewer lanes: the flow goes on with what it has
		}
		used = append(used, s.slot)
		b, _ := wire.AppendHeader(nil, &wire.Header{Kind: wire.KindLane, FlowID: st.id})
		if _, err := s.Stream.Write(b); err != nil {
			s.CancelRead(wire.StreamReset)
			s.CancelWrite(wire.StreamReset)
			s.Release()
			continue
		}
		st.mu.Lock()
		st.lanes = append(st.lanes, s)
		st.mu.Unlock()
		sc.AddLane(s.Stream)
	}
}

// release returns the extra lanes' share of their connections' load once
// the flow is over (the first stream is released by its owner).
func (st *striped) release() {
	st.mu.Lock()
	lanes := st.lanes
	st.lanes = nil
	st.mu.Unlock()
	for _, l := range lanes {
		l.Release()
	}
}

// The methods below make a Stream behave as one byte stream whether it is
// striped or not: before the answer they use the first stream (with the
// client's bytes framed), after it the stripe.

// Read reads the flow's bytes (the region's answer byte comes from the
// first stream).
func (s Stream) Read(p []byte) (int, error) {
	if s.st != nil {
		if sc := s.st.started(); sc != nil {
			return sc.Read(p)
		}
	}
	return s.Stream.Read(p)
}

// Write writes the flow's bytes.
func (s Stream) Write(p []byte) (int, error) {
	if s.st != nil {
		return s.st.writeEarly(s.Stream, p)
	}
	return s.Stream.Write(p)
}

// Close ends the flow's sending direction.
func (s Stream) Close() error {
	if s.st != nil {
		if sc := s.st.started(); sc != nil {
			return sc.Close()
		}
	}
	return s.Stream.Close()
}

// CancelRead resets the flow.
func (s Stream) CancelRead(code quic.StreamErrorCode) {
	if s.st != nil {
		if sc := s.st.started(); sc != nil {
			sc.CancelRead(code)
			return
		}
	}
	s.Stream.CancelRead(code)
}

// CancelWrite resets the flow.
func (s Stream) CancelWrite(code quic.StreamErrorCode) {
	if s.st != nil {
		if sc := s.st.started(); sc != nil {
			sc.CancelWrite(code)
			return
		}
	}
	s.Stream.CancelWrite(code)
}

// SetReadDeadline sets the deadline of the flow's reads.
func (s Stream) SetReadDeadline(t time.Time) error {
	if s.st != nil {
		if sc := s.st.started(); sc != nil {
			return sc.SetReadDeadline(t)
		}
	}
	return s.Stream.SetReadDeadline(t)
}

// Striped reports whether the flow is striped over several connections.
func (s Stream) Striped() bool { return s.st != nil }
