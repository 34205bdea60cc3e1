package dns

import (
	"net/netip"
	"sync"
	"time"
)

// RRLConfig configures response-rate limiting.
type RRLConfig struct {
	// ResponsesPerSecond one client prefix may get of one kind of answer
	// (default 20). Up to one second's worth may come in a burst.
	ResponsesPerSecond int
	// Slip: every Slip-th answer over the limit is sent empty and
	// truncated, so that a real resolver retries over TCP; the others are
	// dropped. 0 drops them all.
	Slip int
	// IPv4PrefixLen and IPv6PrefixLen group clients (defaults 24 and 56).
	IPv4PrefixLen, IPv6PrefixLen int
}

// verdict is what the limiter says about one UDP answer.
type verdict uint8

const (
	send verdict = iota
	drop
	slip
)

// rrl limits UDP answers per (client prefix, kind of answer), after BIND's
// response-rate limiting: a token bucket per account that refills at the
// rate and holds one second's worth; over the limit answers are dropped,
// except every slip-th which goes out truncated. Accounts live in sharded
// maps bounded to maxAccounts in total; a full shard forgets its idle
// accounts first, then arbitrary ones (which can only let more through).
type rrl struct {
	rate       float64
	slip       int
	bits4      int
	bits6      int
	now        func() time.Time
	maxAccount int // per shard
	shards     [rrlShards]rrlShard
}

const (
	rrlShards   = 64
	maxAccounts = 1 << 18
)

type rrlShard struct {
	// mu guards m.
	mu sync.Mutex
	m  map[rrlKey]*account
}

type rrlKey struct {
	prefix [16]byte
	kind   uint64
}

type account struct {
	tokens  float64
	last    int64 // unix nanoseconds of the last refill
	limited uint32
}

func newRRL(c RRLConfig, now func() time.Time) *rrl {
	if c.ResponsesPerSecond <= 0 {
		c.ResponsesPerSecond = 20
	}
	if c.IPv4PrefixLen <= 0 || c.IPv4PrefixLen > 32 {
		c.IPv4PrefixLen = 24
	}
	if c.IPv6PrefixLen <= 0 || c.IPv6PrefixLen > 128 {
		c.IPv6PrefixLen = 56
	}
	r := &rrl{rate: float64(c.ResponsesPerSecond), slip: max(c.Slip, 0), bits4: c.IPv4PrefixLen,
		bits6: c.IPv6PrefixLen, now: now, maxAccount: maxAccounts / rrlShards}
	for i := range r.shards {
		r.shards[i].m = make(map[rrlKey]*account)
	}
	return r
}

// check accounts one answer of the given kind to client.
func (r *rrl) check(client netip.Addr, kind uint64) verdict {
	client = client.Unmap()
	var k rrlKey
	if client.Is4() {
		p, _ := client.Prefix(r.bits4)
		a := p.Addr().As4()
		copy(k.prefix[:], a[:])
	} else {
		p, _ := client.Prefix(r.bits6)
		k.prefix = p.Addr().As16()
		k.prefix[0] ^= 0xff // keep IPv6 accounts apart from IPv4 ones
	}
	k.kind = kind
	h := kind ^ uint64(k.prefix[0])<<8 ^ uint64(k.prefix[1])<<16 ^ uint64(k.prefix[2])<<24 ^ uint64(k.prefix[6])
	sh := &r.shards[(h^h>>29)%rrlShards]
	now := r.now().UnixNano()

	sh.mu.Lock()
	defer sh.mu.Unlock()
	a := sh.m[k]
	if a == nil {
		if len(sh.m) >= r.maxAccount {
			r.evict(sh, now)
		}
		a = &account{tokens: r.rate, last: now}
		sh.m[k] = a
	}
	if elapsed := now - a.last; elapsed > 0 {
		a.tokens = min(r.rate, a.tokens+float64(elapsed)*r.rate/1e9)
		a.last = now
	}
	if a.tokens >= 1 {
		a.tokens--
		return send
	}
	a.limited++
	if r.slip > 0 && a.limited%uint32(r.slip) == 0 {
		return slip
	}
	return drop
}

// evict makes room in a full shard: accounts whose bucket has refilled are
// the same as new ones and go first; if that is not enough, half of the
// rest go.
func (r *rrl) evict(sh *rrlShard, now int64) {
	for k, a := range sh.m {
		if a.tokens+float64(now-a.last)*r.rate/1e9 >= r.rate {
			delete(sh.m, k)
		}
	}
	for k := range sh.m {
		if len(sh.m) < r.maxAccount/2 {
			break
		}
		delete(sh.m, k)
	}
}
