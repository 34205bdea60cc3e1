package router

import (
	"encoding/binary"
	"math"
	"net/netip"
)

// The hashes here must give the same value for the same input in every
// process on every machine: no per-process seeds (hash/maphash), no map
// iteration order, no platform-dependent widths.

// Domain-separation seeds, so that a flow key, an endpoint ID and a region
// salt with the same bytes never hash alike.
const (
	seedFiveTuple uint64 = 0x6a09e667f3bcc908
	seedSourceIP  uint64 = 0xbb67ae8584caa73b
	seedEndpoint  uint64 = 0x3c6ef372fe94f82b
	seedRegion    uint64 = 0xa54ff53a5f1d36f1
)

// mix is the splitmix64 finalizer: a bijection on uint64 with full avalanche.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hashString is FNV-1a 64 over s, seeded and finished with mix. It is used
// only when a Table is compiled.
func hashString(seed uint64, s string) uint64 {
	const (
		offset = 0xcbf29ce484222325
		prime  = 0x100000001b3
	)
	h := uint64(offset) ^ seed
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return mix(h ^ uint64(len(s)))
}

// addrWords returns the 16-byte form of a (IPv4 as IPv4-mapped IPv6, zone
// dropped) as two big-endian words.
func addrWords(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// flowHash hashes the flow key chosen by the affinity.
func flowHash(aff Affinity, f Flow) uint64 {
	shi, slo := addrWords(f.Src.Addr())
	if aff == AffinitySourceIP {
		return mix(mix(seedSourceIP^shi) ^ slo)
	}
	dhi, dlo := addrWords(f.Dst.Addr())
	h := mix(seedFiveTuple ^ shi)
	h = mix(h ^ slo)
	h = mix(h ^ dhi)
	h = mix(h ^ dlo)
	return mix(h ^ uint64(f.Proto)<<32 ^ uint64(f.Src.Port())<<16 ^ uint64(f.Dst.Port()))
}

// admits reports whether the flow with hash fh is within the dial percent of
// flows accepted by the group with the given salt.
func admits(fh, salt uint64, dial int) bool {
	if dial >= 100 {
		return true
	}
	if dial <= 0 {
		return false
	}
	// Map the top 32 bits of the hash onto [0, 100) without modulo bias
	// worth speaking of (bias < 100/2^32).
	bucket := (mix(fh^salt) >> 32) * 100 >> 32
	return bucket < uint64(dial)
}

// uniform maps a 64-bit hash to a float64 strictly inside (0, 1).
func uniform(h uint64) float64 {
	return (float64(h>>11) + 0.5) * (1.0 / (1 << 53))
}

// score is the weighted rendezvous score of an endpoint of weight w whose
// flow-endpoint hash is h: higher wins, and an endpoint wins with
// probability w / sum(w).
func score(w uint8, h uint64) float64 {
	return float64(w) / -math.Log(uniform(h))
}
