package backbone

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/anyedge/anyedge/backbone/wire"
)

// Regions gives the backbone client of each region by name. It is the
// edge's view of the world: which regions are reachable, how far they are,
// and what they say of their endpoints.
type Regions map[string]*Client

// RegionRTT returns the smoothed RTT to region; reachable is false when no
// connection to it is up.
func (r Regions) RegionRTT(region string) (rtt time.Duration, reachable bool) {
	c := r[region]
	if c == nil {
		return 0, false
	}
	return c.RTT()
}

// EndpointHealthy reports whether region considers the endpoint healthy. An
// endpoint the region has not reported yet counts as healthy, so that new
// endpoints take traffic before their first probe.
func (r Regions) EndpointHealthy(region, id string) bool {
	c := r[region]
	if c == nil {
		return false
	}
	healthy, known := c.EndpointHealthy(id)
	return healthy || !known
}

// Offers reports whether region serves an optional feature (its hello
// listed capability cp).
func (r Regions) Offers(region, cp string) bool {
	c := r[region]
	return c != nil && c.Offers(cp)
}

// Fleet merges the edge states every reachable region relayed, keeping the
// newest state of each edge; ok is false when no region relayed any.
func (r Regions) Fleet() (edges map[string]wire.EdgeState, ok bool) {
	edges = map[string]wire.EdgeState{}
	for _, c := range r {
		states, relayed := c.Fleet()
		ok = ok || relayed
		for _, st := range states {
			if old, seen := edges[st.Node]; !seen || st.Newer(old) {
				edges[st.Node] = st
			}
		}
	}
	return edges, ok
}

// OpenFlow opens a stream to region, sends hdr and early (the client's
// first bytes, sent before the answer; may be empty) and waits up to
// timeout for the region's answer. On CodeOK it returns the stream, ready
// for payload; a refusal is a *wire.RefusedError (the region then
// delivered nothing to any endpoint); anything else means the region could
// not be reached in time.
func (r Regions) OpenFlow(ctx context.Context, region string, hdr *wire.Header, early []byte, timeout time.Duration) (Stream, error) {
	str, err := r.StartFlow(ctx, region, hdr, early, timeout)
	if err != nil {
		return str, err
	}
	if err := AwaitAnswer(ctx, str, time.Now().Add(timeout)); err != nil {
		CancelFlow(str)
		return Stream{}, err
	}
	return str, nil
}

// StartFlow opens a stream to region (waiting at most timeout for stream
// credit) and sends hdr, followed in the same write by early, the client's
// first bytes (may be empty): the region holds them until its endpoint
// dial succeeds and drops them when it refuses. AwaitAnswer then reads the
// region's answer. The caller owns the stream: CancelFlow it unless it is
// answered OK and used.
func (r Regions) StartFlow(ctx context.Context, region string, hdr *wire.Header, early []byte, timeout time.Duration) (Stream, error) {
	client := r[region]
	if client == nil {
		return Stream{}, fmt.Errorf("%s: %w", region, ErrUnreachable)
	}
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	str, err := client.OpenStream(octx)
	if err != nil {
		return str, err
	}
	h := *hdr
	if h.Kind == wire.KindTCP && client.striping() {
		str.st = newStriped(client)
		h.Flags |= wire.FlagStriped
		h.FlowID = str.st.id
	}
	var buf [wire.MaxHeaderLen]byte
	b := buf[:0]
	if len(early) > 0 {
		b = make([]byte, 0, wire.MaxHeaderLen+len(early)+16)
	}
	b, err = wire.AppendHeader(b, &h)
	if err == nil && str.st != nil {
		// Striped: the client's bytes travel as stripe frames from the start.
		_, err = str.Stream.Write(b)
		if err == nil && len(early) > 0 {
			_, err = str.Write(early)
		}
	} else if err == nil {
		b = append(b, early...)
		_, err = str.Write(b)
	}
	if err != nil {
		CancelFlow(str)
		return Stream{}, fmt.Errorf("%s: write header: %w", region, err)
	}
	str.held = hdr.Flags&wire.FlagHold != 0
	return str, nil
}

// AwaitAnswer reads the region's one-byte answer to a flow's header. It
// returns nil for CodeOK, a *wire.RefusedError for a refusal, and an error
// wrapping os.ErrDeadlineExceeded when no answer came by deadline (the
// stream is then still usable: AwaitAnswer may be called again). When ctx
// ends first, the stream's read side is cancelled and ctx's error returned.
func AwaitAnswer(ctx context.Context, str Stream, deadline time.Time) error {
	_, err := AwaitWinner(ctx, str, deadline)
	return err
}

// AwaitWinner is AwaitAnswer that also returns, for a held stream answered
// OK, which of its candidates the region connected (0 is the header's
// endpoint, i its alternate i−1); 0 for other streams.
func AwaitWinner(ctx context.Context, str Stream, deadline time.Time) (int, error) {
	stop := context.AfterFunc(ctx, func() { str.CancelRead(wire.StreamReset) })
	_ = str.SetReadDeadline(deadline)
	var answer [2]byte
	_, err := io.ReadFull(str, answer[:1])
	if err == nil && str.held && answer[0] == byte(wire.CodeOK) {
		// The winner's index travels in the same write as the code, so it
		// is read without the deadline: quic-go checks a passed deadline
		// before buffered data, and a deadline that passed between the
		// two reads would leave the index to be misread as the next
		// call's code (an OK from candidate 1 taken for "bad header").
		_ = str.SetReadDeadline(time.Time{})
		_, err = io.ReadFull(str, answer[1:])
	}
	_ = str.SetReadDeadline(time.Time{})
	if !stop() {
		return 0, ctx.Err()
	}
	if err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	if c := wire.Code(answer[0]); c != wire.CodeOK {
		return 0, &wire.RefusedError{Code: c}
	}
	if str.st != nil {
		str.st.start(str)
	}
	return int(answer[1]), nil
}

// CancelFlow resets a flow's stream both ways and returns its share of
// the connection's load.
func CancelFlow(str Stream) {
	str.CancelRead(wire.StreamReset)
	str.CancelWrite(wire.StreamReset)
	str.Release()
}
