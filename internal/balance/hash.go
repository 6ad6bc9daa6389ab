package balance

import (
	"math"
	"net/netip"
)

// The rendezvous score. It is part of the contract between load balancer
// replicas: every replica, whatever its build or version, given the same
// server list must rank the servers the same way for a key, with no shared
// state. Changing anything below moves keys between servers on upgrade;
// TestHashGolden pins it.
//
//	fnv1a64(b)  FNV-1a 64: h = 0xcbf29ce484222325; for each byte: h ^= byte; h *= 0x100000001b3
//	fmix64(x)   MurmurHash3 finalizer: x ^= x>>33; x *= 0xff51afd7ed558ccd;
//	            x ^= x>>33; x *= 0xc4ceb9fe1a85ec53; x ^= x>>33
//	key bytes   a client id or username: its bytes as given (UTF-8);
//	            a source IP: its 16-byte form (IPv4 as IPv4-mapped IPv6, zone dropped)
//	h           fmix64(fnv1a64(key bytes) XOR fmix64(fnv1a64(server name)))
//	u           (float64(h>>11) + 0.5) / 2^53, so 0 < u < 1
//	score       weight / -ln(u)   (weighted rendezvous, "highest random weight")
//
// Servers rank by score, then by h, then by name, highest first. When all
// weights are equal the score is a non-decreasing function of h, so ranking
// by h then name is the same order; that case skips the logarithm. The
// logarithm is math.Log: platforms may differ in its last bit, which can
// reorder two servers only when their scores agree to about 1 part in 2^52.
const (
	fnvOffset64 = 0xcbf29ce484222325
	fnvPrime64  = 0x100000001b3
)

// fnv1aString is fnv1a64 of a string's bytes.
func fnv1aString(s string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// fnv1aAddr is fnv1a64 of an address's 16-byte form.
func fnv1aAddr(a netip.Addr) uint64 {
	b := a.As16()
	h := uint64(fnvOffset64)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime64
	}
	return h
}

// fmix64 is MurmurHash3's 64-bit finalizer: a bijection in which every
// input bit affects every output bit.
func fmix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// serverSeed is the per-server half of h, computed once per policy.
func serverSeed(name string) uint64 { return fmix64(fnv1aString(name)) }

// keyServerHash is h for a key hash and a server seed.
func keyServerHash(key, seed uint64) uint64 { return fmix64(key ^ seed) }

// weightedScore is weight / -ln(u) for u taken from the top 53 bits of h.
func weightedScore(h uint64, weight float64) float64 {
	u := (float64(h>>11) + 0.5) / (1 << 53)
	return weight / -math.Log(u)
}

// rank is a server's place in a key's order; see the comment above.
type rank struct {
	score float64 // 0 when all weights are equal
	h     uint64
	name  string
}

// above reports whether r ranks before o.
func (r rank) above(o rank) bool {
	if r.score != o.score {
		return r.score > o.score
	}
	if r.h != o.h {
		return r.h > o.h
	}
	return r.name > o.name
}
