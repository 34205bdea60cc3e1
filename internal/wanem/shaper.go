package wanem

import (
	"math/rand/v2"
)

// verdict is what the shaper decides for one packet.
type verdict uint8

const (
	pass verdict = iota
	dropLoss
	dropQueue
)

// shaper decides, for each packet as it arrives, whether it is lost and
// when it leaves. It is the whole emulation model, free of I/O and clocks:
// times are nanoseconds on any monotonic scale. Not safe for concurrent
// use: one direction's loop owns it.
type shaper struct {
	p        Params
	rng      *rand.Rand
	bad      bool  // Gilbert–Elliott state
	busy     int64 // when the rate limiter finishes the last accepted packet
	lastSend int64 // release time of the last accepted packet
}

func newShaper(p Params) *shaper {
	seed := p.Seed
	if seed == 0 {
		seed = 0x5eed
	}
	return &shaper{p: p, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// set changes the parameters; packets already accepted keep their times,
// and the loss generators keep their state.
func (s *shaper) set(p Params) { s.p = p }

// admit decides the fate of a packet of size bytes arriving at now: lost,
// dropped at the tail of a full queue, or released at sendAt. Loss is
// applied before the queue (a lost packet costs no link time), as netem
// does. Release times never decrease.
func (s *shaper) admit(now int64, size int) (sendAt int64, v verdict) {
	if s.lost() {
		return 0, dropLoss
	}
	t := now
	if r := s.p.RateBits; r > 0 {
		start := max(now, s.busy)
		if backlog := (start - now) * r / 8e9; int(backlog)+size > s.p.queue() {
			return 0, dropQueue
		}
		s.busy = start + int64(size)*8e9/r
		t = s.busy
	}
	sendAt = max(t+int64(s.p.Delay), s.lastSend)
	s.lastSend = sendAt
	return sendAt, pass
}

func (s *shaper) lost() bool {
	lost := s.p.Loss > 0 && s.rng.Float64() < s.p.Loss
	if g := s.p.Burst; g != nil {
		pl := g.LossGood
		if s.bad {
			pl = g.LossBad
		}
		if pl > 0 && s.rng.Float64() < pl {
			lost = true
		}
		if s.bad {
			s.bad = s.rng.Float64() >= g.R
		} else {
			s.bad = s.rng.Float64() < g.P
		}
	}
	return lost
}
