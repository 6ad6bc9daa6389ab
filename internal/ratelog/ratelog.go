// Package ratelog is the one rate-limited logger of mqlb: a warning that
// may repeat on a hot path (per connection, per message) is written at most
// once per interval per key, with how many were suppressed since, so an
// outage does not write a line per client.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxKeys bounds the keys a Log remembers (keys may be client addresses):
// beyond it, keys last written an interval ago or more are forgotten, and
// if none is, all of them.
const maxKeys = 1 << 14

// Log logs a message at most once per interval per key.
type Log struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]*rateEntry
}

type rateEntry struct {
	at         time.Time
	suppressed int
}

// New returns a Log that writes each key at most once per every.
func New(every time.Duration) *Log {
	return &Log{every: every, last: map[string]*rateEntry{}}
}

// Warn logs msg with args at warning level unless key was logged less than
// every ago; the next line written for key carries suppressed=N.
func (r *Log) Warn(log *slog.Logger, key, msg string, args ...any) {
	r.log(log, slog.LevelWarn, key, msg, args)
}

// Info is Warn at info level.
func (r *Log) Info(log *slog.Logger, key, msg string, args ...any) {
	r.log(log, slog.LevelInfo, key, msg, args)
}

func (r *Log) log(log *slog.Logger, level slog.Level, key, msg string, args []any) {
	now := time.Now()
	r.mu.Lock()
	e := r.last[key]
	if e != nil && now.Sub(e.at) < r.every {
		e.suppressed++
		r.mu.Unlock()
		return
	}
	if e == nil {
		if len(r.last) >= maxKeys {
			r.prune(now)
		}
		e = &rateEntry{}
		r.last[key] = e
	}
	n := e.suppressed
	e.at, e.suppressed = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Log(context.Background(), level, msg, args...)
}

// prune forgets keys last written every ago or more, or all of them.
func (r *Log) prune(now time.Time) {
	for k, e := range r.last {
		if now.Sub(e.at) >= r.every {
			delete(r.last, k)
		}
	}
	if len(r.last) >= maxKeys {
		clear(r.last)
	}
}
