package upstream

import (
	"math/rand/v2"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
)

// minShare is a server's share of its weight when its slow start begins.
const minShare = 0.05

// cameUp records that s just started taking connections (health up, an
// operator enabled it, or a reload added it), which begins its slow start.
func (s *Server) cameUp() { s.upSince.Store(time.Now().UnixNano()) }

// Share is the fraction of its weight s takes now: it grows linearly from
// 5% to 1 over slow_start after the server came up, and is 1 without slow
// start or for servers that were up when the load balancer started.
func (u *Upstream) Share(s *Server) float64 {
	w := u.cfg.SlowStart.D()
	since := s.upSince.Load()
	if w <= 0 || since == 0 {
		return 1
	}
	f := float64(time.Now().UnixNano()-since) / float64(w)
	if f >= 1 {
		return 1
	}
	return max(f, minShare)
}

// Admits reports whether s, maybe in slow start, takes connection c now:
// for the hashing policies a key is admitted once the share passes its
// fixed threshold (keys are admitted progressively), for the others a
// connection is admitted with probability share.
func (u *Upstream) Admits(s *Server, c *balance.Conn) bool {
	share := u.Share(s)
	if share >= 1 {
		return true
	}
	if k, ok := u.Policy.(balance.Keyed); ok {
		return balance.Admits(k.KeyHash(c), s.name, share)
	}
	return rand.Float64() < share
}

// slowStarting reports whether any server of u is in its slow start.
func (u *Upstream) slowStarting() bool {
	if u.cfg.SlowStart <= 0 {
		return false
	}
	for _, s := range u.Servers {
		if u.Share(s) < 1 {
			return true
		}
	}
	return false
}
