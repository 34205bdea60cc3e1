package wanem

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestShaperDelayOnly(t *testing.T) {
	s := newShaper(Params{Delay: 10 * time.Millisecond})
	for i := range int64(100) {
		at, v := s.admit(i*1000, 1500)
		require.Equal(t, pass, v)
		require.Equal(t, i*1000+int64(10*time.Millisecond), at)
	}
}

func TestShaperRateSpacesPackets(t *testing.T) {
	// 12 Mbit/s: a 1500-byte packet takes 1 ms on the wire.
	s := newShaper(Params{RateBits: 12_000_000, QueueBytes: 1 << 20, Delay: time.Millisecond})
	var last int64
	for i := range 10 {
		at, v := s.admit(0, 1500) // a burst at t=0
		require.Equal(t, pass, v)
		want := int64(i+1)*int64(time.Millisecond) + int64(time.Millisecond)
		require.Equal(t, want, at, "packet %d", i)
		require.Greater(t, at, last)
		last = at
	}
}

func TestShaperDropTail(t *testing.T) {
	// The queue holds 3000 bytes, the packet on the wire included: a burst
	// of 10 keeps 2 and drops the rest.
	s := newShaper(Params{RateBits: 12_000_000, QueueBytes: 3000})
	passed, dropped := 0, 0
	for range 10 {
		if _, v := s.admit(0, 1500); v == pass {
			passed++
		} else {
			require.Equal(t, dropQueue, v)
			dropped++
		}
	}
	require.Equal(t, 2, passed)
	require.Equal(t, 8, dropped)
	// Once the queue drained (10 ms later), packets pass again.
	_, v := s.admit(int64(10*time.Millisecond), 1500)
	require.Equal(t, pass, v)
}

func TestShaperReleaseNeverGoesBack(t *testing.T) {
	s := newShaper(Params{Delay: 50 * time.Millisecond})
	a, _ := s.admit(0, 100)
	s.set(Params{Delay: time.Millisecond})
	b, _ := s.admit(1, 100)
	require.GreaterOrEqual(t, b, a, "a shorter delay must not overtake packets already queued")
}

func TestShaperRandomLoss(t *testing.T) {
	const n = 200_000
	s := newShaper(Params{Loss: 0.01, Seed: 7})
	lost := 0
	for i := range n {
		if _, v := s.admit(int64(i), 100); v == dropLoss {
			lost++
		}
	}
	// 1 % of 200,000: 2,000 ± 4σ (σ ≈ 44.5).
	require.InDelta(t, 2000, lost, 180)
}

func TestShaperGilbertElliott(t *testing.T) {
	g := &GilbertElliott{P: 0.001, R: 0.1, LossGood: 0, LossBad: 0.5}
	const n = 2_000_000
	s := newShaper(Params{Burst: g, Seed: 11})
	lost, bursts, prevLost := 0, 0, false
	for i := range n {
		_, v := s.admit(int64(i), 100)
		l := v == dropLoss
		if l {
			lost++
			if !prevLost {
				bursts++
			}
		}
		prevLost = l
	}
	mean := g.MeanLoss()
	require.InDelta(t, mean, float64(lost)/n, mean*0.15, "long-run loss")
	// Losses cluster: far fewer loss runs than losses would give if independent.
	require.Less(t, float64(bursts), 0.8*float64(lost))
	require.False(t, math.IsNaN(mean))
}

func TestParamsValidate(t *testing.T) {
	for _, tc := range []struct {
		p    Params
		want string
	}{
		{Params{Loss: 1.5}, "loss 1.5"},
		{Params{Loss: -0.1}, "loss -0.1"},
		{Params{Delay: -time.Second}, "delay -1s is negative"},
		{Params{RateBits: -1}, "rate -1"},
		{Params{QueueBytes: -1}, "queue -1"},
		{Params{Burst: &GilbertElliott{P: 2}}, "burst p 2"},
		{Params{Burst: &GilbertElliott{LossBad: math.NaN()}}, "burst loss_bad NaN"},
	} {
		require.ErrorContains(t, tc.p.Validate(), tc.want)
	}
	require.NoError(t, Params{Delay: time.Second, Loss: 0.5, RateBits: 1e9}.Validate())
}
