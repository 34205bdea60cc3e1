package gateway_test

import (
	"io"
	"syscall"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/anyedge/anyedge/backbone/gateway"
	"github.com/anyedge/anyedge/backbone/wire"
)

// TestSetEndpointsCutsRemoved: a reload that keeps an endpoint (with
// another address even) keeps its flows; one that removes it resets its
// flows with StreamEndpointRemoved, towards the edge and the endpoint,
// and new streams naming it are refused.
func TestSetEndpointsCutsRemoved(t *testing.T) {
	f := newFixture(t, 0)
	s, c := f.flow(t)
	roundTrip(t, s, c)

	web := gateway.Endpoint{ID: "web", Host: "127.0.0.2", Port: f.ep.port(), ListenerPorts: [][2]uint16{{port, port}}}
	require.Zero(t, f.gw.SetEndpoints([]gateway.Endpoint{web}), "a kept endpoint's flow was cut")
	roundTrip(t, s, c)

	require.Equal(t, 1, f.gw.SetEndpoints(nil))
	_, err := io.ReadAll(s)
	var se *quic.StreamError
	require.ErrorAs(t, err, &se)
	require.Equal(t, wire.StreamEndpointRemoved, se.ErrorCode)
	_, err = io.ReadAll(c)
	require.ErrorIs(t, err, syscall.ECONNRESET)
	eventuallyZero(t, f.gw)

	s2 := f.open(t)
	_, err = s2.Write(header("web", port))
	require.NoError(t, err)
	require.Equal(t, wire.CodeUnknownEndpoint, readCode(t, s2))
}
