package proxy

import (
	"log/slog"
	"sync"
	"time"
)

// rateLog logs a message at most once per interval per key, saying how many
// were suppressed since: an outage must not write a line per client.
type rateLog struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]*rateEntry
}

type rateEntry struct {
	at         time.Time
	suppressed int
}

func newRateLog(every time.Duration) *rateLog {
	return &rateLog{every: every, last: map[string]*rateEntry{}}
}

// warn logs msg with args unless key was logged less than every ago.
func (r *rateLog) warn(log *slog.Logger, key, msg string, args ...any) {
	now := time.Now()
	r.mu.Lock()
	e := r.last[key]
	if e != nil && now.Sub(e.at) < r.every {
		e.suppressed++
		r.mu.Unlock()
		return
	}
	if e == nil {
		e = &rateEntry{}
		r.last[key] = e
	}
	n := e.suppressed
	e.at, e.suppressed = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Warn(msg, args...)
}
