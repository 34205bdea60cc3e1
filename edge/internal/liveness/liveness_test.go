package liveness

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestIdleLoopWakes: an accept loop with nothing to accept still wakes
// once per period and records it; a loop that stops going round does not.
func TestIdleLoopWakes(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer ln.Close()
	s := NewSet(10 * time.Millisecond)
	l := s.Loop(ln.SetDeadline)
	start := s.Oldest()
	require.False(t, start.IsZero())

	for range 3 {
		_, err := ln.Accept()
		require.True(t, l.Woke(err), "the deadline wakes the loop: %v", err)
	}
	require.True(t, s.Oldest().After(start), "each wake-up is recorded")

	stuck := s.Loop(func(time.Time) error { return nil }) // never woken again
	_, err = ln.Accept()
	require.True(t, l.Woke(err))
	require.Equal(t, time.Unix(0, stuck.at.Load()), s.Oldest(), "the stuck loop holds the oldest time")
}

func TestNilSetCostsNothing(t *testing.T) {
	var s *Set
	require.Nil(t, NewSet(0))
	l := s.Loop(func(time.Time) error { panic("never armed") })
	require.Nil(t, l)
	require.False(t, l.Woke(nil))
	require.True(t, s.Oldest().IsZero())
}

func TestOtherErrorsAreNotWakeUps(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	l := NewSet(time.Hour).Loop(ln.SetDeadline)
	require.NoError(t, ln.Close())
	_, err = ln.Accept()
	require.False(t, l.Woke(err), "a closed listener is not a wake-up")
}

// TestDone: a loop that ended on purpose no longer counts as the oldest.
func TestDone(t *testing.T) {
	s := NewSet(time.Hour)
	a := s.Loop(func(time.Time) error { return nil })
	require.False(t, s.Oldest().IsZero())
	a.Done()
	require.True(t, s.Oldest().IsZero(), "an ended loop is not stuck")
	a.Done()
	var none *Loop
	none.Done()
}
