package session

import (
	"context"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// A client resuming a persistent session while the registry cannot be read
// or written is held, not refused: its CONNECT waits until the registry
// answers again, up to resumeWait, and the client then gets its CONNACK at
// once. The usual cause is a JetStream leader election after a node died,
// which nats-server starts 4-9 s after the leader's last heartbeat. A
// refused client goes into its own reconnect backoff (paho doubles it: 1, 2,
// 4, 8 s ...), so one refused three times during an election came back
// seconds after the store had; the load balancer's retry on "server
// unavailable" cannot help, every node waits for the same election.
//
// resumeWait stays below the load balancer's connect_timeout (10 s by
// default), which counts the wait: a client still held then is refused by
// the node in time for the load balancer to answer it.
const (
	resumeWait  = 8 * time.Second
	resumeRetry = 250 * time.Millisecond
)

// retryRegistry is called after a registry operation for cl failed: it
// returns true, after resumeRetry, if cl's wait allows another try. The
// wait starts at cl's first failure; Establish and Resumable share it.
func (s *Tracker) retryRegistry(cl *mqtt.Client) bool {
	v, loaded := s.waiting.LoadOrStore(cl, time.Now().Add(resumeWait))
	if !loaded {
		s.sweepWaits()
	}
	if time.Until(v.(time.Time)) < resumeRetry {
		return false
	}
	select {
	case <-time.After(resumeRetry):
		return true
	case <-s.env.Ctx.Done():
		return false
	}
}

// attempt is the context of one registry operation for cl: three times
// mesh.timeout, or while cl waits, mesh.timeout and not beyond the end of
// its wait (so that one operation hanging until a new leader answers does
// not use the wait up).
func (s *Tracker) attempt(cl *mqtt.Client) (context.Context, context.CancelFunc) {
	v, waiting := s.waiting.Load(cl)
	if !waiting {
		return context.WithTimeout(context.Background(), 3*s.env.Timeout)
	}
	d := time.Now().Add(s.env.Timeout)
	if end := v.(time.Time); end.Before(d) {
		d = end
	}
	return context.WithDeadline(context.Background(), d)
}

// sweepWaits forgets the waits of connections that ended without
// Establish (a client refused by authentication): entries exist only while
// the registry fails, so ranging over them is cheap.
func (s *Tracker) sweepWaits() {
	now := time.Now()
	s.waiting.Range(func(k, v any) bool {
		if now.After(v.(time.Time).Add(resumeWait)) {
			s.waiting.Delete(k)
		}
		return true
	})
}

// doneWaiting forgets cl's wait once its session is established or refused.
func (s *Tracker) doneWaiting(cl *mqtt.Client) { s.waiting.Delete(cl) }
