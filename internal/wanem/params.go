// Package wanem emulates wide-area links in user space, for a kernel
// without netem: packets read from one TUN device are delayed, dropped at
// random or in bursts, rate limited behind a bounded drop-tail queue, and
// written to another TUN device, typically in another network namespace.
//
// Each direction of a link is one scheduling loop on its own OS thread,
// over a time-ordered queue (a FIFO: the delay of a direction is constant
// and the rate limiter serves packets in order, so release times never
// decrease). There is no goroutine and no timer per packet; the loop
// sleeps in ppoll(2) until the next packet is due or a new one arrives.
// The emulator is honest about its own lateness: every packet written more
// than LateThreshold after its due time is counted (Stats.Late), and a
// benchmark discards runs that had any.
package wanem

import (
	"errors"
	"fmt"
	"time"
)

// LateThreshold is how late a packet may leave before it counts as late.
const LateThreshold = time.Millisecond

// Params shape one direction of a link. The zero value is a perfect wire.
type Params struct {
	// Delay is the one-way propagation delay added to every packet.
	Delay time.Duration
	// Loss is the probability (0–1) that a packet is dropped at random,
	// independently of every other packet.
	Loss float64
	// Burst, when set, drops packets by a Gilbert–Elliott model on top of
	// Loss.
	Burst *GilbertElliott
	// RateBits is the link rate in bits per second; 0 is unlimited.
	RateBits int64
	// QueueBytes bounds the bytes accepted by the rate limiter and not yet
	// transmitted, the packet being transmitted included (drop-tail); 0
	// means DefaultQueue for the rate. Unused without a rate.
	QueueBytes int
	// Seed seeds the loss generators (0: a fixed default), so that a run
	// is reproducible.
	Seed uint64
}

// GilbertElliott is the two-state burst loss model: in the good state a
// packet is lost with probability LossGood, in the bad state with LossBad;
// after each packet the state moves good → bad with probability P and
// bad → good with probability R. The mean burst lasts 1/R packets, and the
// long-run loss is (R·LossGood + P·LossBad)/(P+R).
type GilbertElliott struct {
	P, R              float64
	LossGood, LossBad float64
}

// MeanLoss is the long-run loss ratio of the model.
func (g *GilbertElliott) MeanLoss() float64 {
	if g.P+g.R == 0 {
		return g.LossGood
	}
	return (g.R*g.LossGood + g.P*g.LossBad) / (g.P + g.R)
}

// DefaultQueue is the drop-tail queue for a rate: 50 ms worth of bytes,
// at least 64 KiB — a router buffer, not a bufferbloat reservoir.
func DefaultQueue(rateBits int64) int {
	return max(int(rateBits/8/20), 64<<10)
}

// Validate reports the first parameter out of range, naming it.
func (p Params) Validate() error {
	prob := func(name string, v float64) error {
		if v < 0 || v > 1 || v != v {
			return fmt.Errorf("wanem: %s %v is not a probability in [0, 1]", name, v)
		}
		return nil
	}
	var errs []error
	if p.Delay < 0 {
		errs = append(errs, fmt.Errorf("wanem: delay %v is negative", p.Delay))
	}
	errs = append(errs, prob("loss", p.Loss))
	if g := p.Burst; g != nil {
		errs = append(errs, prob("burst p", g.P), prob("burst r", g.R),
			prob("burst loss_good", g.LossGood), prob("burst loss_bad", g.LossBad))
	}
	if p.RateBits < 0 {
		errs = append(errs, fmt.Errorf("wanem: rate %d bit/s is negative", p.RateBits))
	}
	if p.QueueBytes < 0 {
		errs = append(errs, fmt.Errorf("wanem: queue %d bytes is negative", p.QueueBytes))
	}
	return errors.Join(errs...)
}

func (p Params) String() string {
	s := fmt.Sprintf("delay=%v loss=%.3g%%", p.Delay, p.Loss*100)
	if p.Burst != nil {
		s += fmt.Sprintf(" burst(p=%.3g r=%.3g good=%.3g bad=%.3g)", p.Burst.P, p.Burst.R, p.Burst.LossGood, p.Burst.LossBad)
	}
	if p.RateBits > 0 {
		s += fmt.Sprintf(" rate=%dbit queue=%dB", p.RateBits, p.queue())
	}
	return s
}

func (p Params) queue() int {
	if p.QueueBytes > 0 {
		return p.QueueBytes
	}
	return DefaultQueue(p.RateBits)
}
