package session

import (
	"context"
	"time"
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

// registryWait is the wait of one Establish: zero until a registry
// operation fails, then when the wait ends.
type registryWait struct{ until time.Time }

// retry is called after a registry operation failed: it returns true,
// after resumeRetry, if the wait allows another try. The wait starts at the
// first failure.
func (w *registryWait) retry(ctx context.Context) bool {
	if w.until.IsZero() {
		w.until = time.Now().Add(resumeWait)
	}
	if time.Until(w.until) < resumeRetry {
		return false
	}
	select {
	case <-time.After(resumeRetry):
		return true
	case <-ctx.Done():
		return false
	}
}

// attempt is the context of one registry operation: three times timeout,
// or while waiting, timeout and not beyond the end of the wait (so that one
// operation hanging until a new leader answers does not use the wait up).
func (w *registryWait) attempt(timeout time.Duration) (context.Context, context.CancelFunc) {
	if w.until.IsZero() {
		return context.WithTimeout(context.Background(), 3*timeout)
	}
	d := time.Now().Add(timeout)
	if w.until.Before(d) {
		d = w.until
	}
	return context.WithDeadline(context.Background(), d)
}
