package lbauth

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// cacheKey is a SHA-256 over everything the decision may depend on, the
// password included, so the cache never holds a password.
type cacheKey [sha256.Size]byte

func keyOf(r *Request) cacheKey {
	h := sha256.New()
	var n [4]byte
	remote := r.Remote
	if ap, err := netip.ParseAddrPort(r.Remote); err == nil {
		remote = ap.Addr().String() // the port changes with every connection
	}
	for _, f := range []string{r.ClientID, r.Username, r.Password, r.CertIdentity, remote, string(rune(r.ProtocolVersion))} {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	var k cacheKey
	h.Sum(k[:0])
	return k
}

// cache keeps decisions for ttl, at most size of them.
type cache struct {
	ttl  time.Duration
	size int
	mu   sync.Mutex
	m    map[cacheKey]entry
}

type entry struct {
	allow   bool
	expires time.Time
}

func newCache(ttl time.Duration, size int) *cache {
	return &cache{ttl: ttl, size: size, m: map[cacheKey]entry{}}
}

func (c *cache) get(k cacheKey) (allow, ok bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	if ok && time.Now().After(e.expires) {
		delete(c.m, k)
		ok = false
	}
	c.mu.Unlock()
	return e.allow, ok
}

// put stores a decision. When full it drops expired entries, and if none
// had expired, an arbitrary tenth of the entries.
func (c *cache) put(k cacheKey, allow bool) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.size {
		c.evict(now)
	}
	c.m[k] = entry{allow: allow, expires: now.Add(c.ttl)}
}

func (c *cache) evict(now time.Time) {
	for k, e := range c.m {
		if now.After(e.expires) {
			delete(c.m, k)
		}
	}
	drop := len(c.m) - c.size + max(1, c.size/10)
	for k := range c.m {
		if drop <= 0 {
			break
		}
		delete(c.m, k)
		drop--
	}
}
