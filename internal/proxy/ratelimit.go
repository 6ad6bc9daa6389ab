package proxy

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mqlb/mqlb/internal/config"
)

// ipLimiter is a token bucket per client IP (connect_rate_per_ip with
// connect_burst_per_ip). Buckets idle for a minute are forgotten.
type ipLimiter struct {
	rate  rate.Limit
	burst int

	mu    sync.Mutex
	m     map[netip.Addr]*ipBucket
	swept time.Time
}

type ipBucket struct {
	l    *rate.Limiter
	seen time.Time
}

const bucketIdle = time.Minute

func newIPLimiter(l config.Limits) *ipLimiter {
	return &ipLimiter{rate: rate.Limit(l.ConnectRatePerIP), burst: l.ConnectBurst, m: map[netip.Addr]*ipBucket{}, swept: time.Now()}
}

func (l *ipLimiter) same(c config.Limits) bool {
	return l.rate == rate.Limit(c.ConnectRatePerIP) && l.burst == c.ConnectBurst
}

// allow takes a token for a from its bucket.
func (l *ipLimiter) allow(a netip.Addr) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > bucketIdle {
		for k, b := range l.m {
			if now.Sub(b.seen) > bucketIdle {
				delete(l.m, k)
			}
		}
		l.swept = now
	}
	b := l.m[a]
	if b == nil {
		b = &ipBucket{l: rate.NewLimiter(l.rate, l.burst)}
		l.m[a] = b
	}
	b.seen = now
	return b.l.AllowN(now, 1)
}
