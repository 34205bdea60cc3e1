package backbone_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone"
	"github.com/anyedge/anyedge/backbone/wire"
)

// splitAnswer is a region that answers every held data stream OK in two
// writes, the winner's index only once the edge's first read deadline has
// passed; control streams go to the gateway.
type splitAnswer struct {
	gw backbone.Handler
	// mu guards seen and deadline.
	mu       sync.Mutex
	seen     map[*quic.Conn]bool
	deadline time.Time // the edge's first deadline
}

func (s *splitAnswer) ServeStream(ctx context.Context, p backbone.Peer, str *quic.Stream) {
	s.mu.Lock()
	seen, deadline := s.seen[p.Conn], s.deadline
	s.seen[p.Conn] = true
	s.mu.Unlock()
	if !seen {
		s.gw.ServeStream(ctx, p, str) // the connection's control stream
		return
	}
	if _, err := wire.ReadHeader(str); err != nil {
		str.CancelWrite(wire.StreamReset)
		return
	}
	_, _ = str.Write([]byte{byte(wire.CodeOK)})
	select {
	case <-time.After(time.Until(deadline) + 20*time.Millisecond):
	case <-ctx.Done():
		return
	}
	_, _ = str.Write([]byte{1})
	<-ctx.Done()
}

// TestHeldAnswerAcrossDeadline: a held stream's answer (code, winner) is
// read whole even when the caller's deadline passes between its two bytes
// — the winner's index is never left behind to be read as the next
// answer's code (an OK from the second candidate once read as "bad
// header": quic-go reports a passed deadline before buffered data).
func TestHeldAnswerAcrossDeadline(t *testing.T) {
	l := newLab(t)
	r := l.startRegion(t, regionOpts{})
	split := &splitAnswer{gw: r.gw, seen: map[*quic.Conn]bool{}}
	r.rec.h = split
	c := l.startClient(t, edgeName, r.addr, 1)
	waitLive(t, c, 1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hdr := &wire.Header{Kind: wire.KindTCP, Flags: wire.FlagHold, EndpointID: endpointID,
		Alternates: []string{"other"}, ListenerPort: listenerPort, HedgeDelay: 50 * time.Millisecond}
	deadline := time.Now().Add(300 * time.Millisecond)
	split.mu.Lock()
	split.deadline = deadline
	split.mu.Unlock()
	str, err := backbone.Regions{regionName: c}.StartFlow(ctx, regionName, hdr, nil, 10*time.Second)
	require.NoError(t, err)
	defer backbone.CancelFlow(str)

	for {
		winner, err := backbone.AwaitWinner(ctx, str, deadline)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Nothing read yet (a slow machine): wait again, as the edge does.
			deadline = time.Now().Add(10 * time.Second)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, 1, winner)
		return
	}
}
