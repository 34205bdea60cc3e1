package gateway_test

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/wire"
)

func heldHeader(t *testing.T, hedge time.Duration, ids ...string) []byte {
	t.Helper()
	b, err := wire.AppendHeader(nil, &wire.Header{
		Kind: wire.KindTCP, Flags: wire.FlagHold, ListenerPort: port, EndpointID: ids[0],
		Alternates: ids[1:], HedgeDelay: hedge,
		Client:      netip.MustParseAddrPort("198.18.0.5:40000"),
		Accelerator: netip.MustParseAddrPort("203.0.113.10:8080"),
	})
	require.NoError(t, err)
	return b
}

// TestHeldStreamAnswers: a held stream's region dials its candidates in
// order, moving on at once from a refused dial and from an ID it does not
// know, delivers the bytes held in the stream to the winner only, and
// answers OK with the winner's index; when every candidate fails it
// answers the last dial's failure (or, with nothing to dial, the lookup's)
// in one byte. A stream without FlagHold (an
// edge from before held delivery) still gets its one-byte answer.
func TestHeldStreamAnswers(t *testing.T) {
	f := newFixture(t, 0)

	s := f.open(t)
	_, err := s.Write(append(heldHeader(t, time.Hour, "unknown", "down", "web"), "GET / HTTP/1.1\r\n\r\n"...))
	require.NoError(t, err)
	var answer [2]byte
	_, err = io.ReadFull(s, answer[:])
	require.NoError(t, err)
	require.Equal(t, [2]byte{byte(wire.CodeOK), 2}, answer, "OK, won by candidate 2")
	c := f.ep.accept(t)
	buf := make([]byte, 18)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "GET / HTTP/1.1\r\n\r\n", string(buf))
	require.Equal(t, "down: endpoint refused connection", <-f.ejected)
	roundTrip(t, s, c)

	s = f.open(t)
	_, err = s.Write(append(heldHeader(t, time.Hour, "down", "unknown"), "GET"...))
	require.NoError(t, err)
	b, err := io.ReadAll(s)
	require.NoError(t, err)
	require.Equal(t, []byte{byte(wire.CodeDialRefused)}, b, "the last dial's failure, one byte")
	require.Equal(t, "down: endpoint refused connection", <-f.ejected)

	s = f.open(t)
	_, err = s.Write(heldHeader(t, time.Hour, "unknown"))
	require.NoError(t, err)
	b, err = io.ReadAll(s)
	require.NoError(t, err)
	require.Equal(t, []byte{byte(wire.CodeUnknownEndpoint)}, b, "nothing to dial: the lookup's failure")

	s, c = f.flow(t) // version 1 header: one byte, as ever
	roundTrip(t, s, c)
}
