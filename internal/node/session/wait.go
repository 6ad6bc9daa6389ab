package session

import (
	"context"
	"time"
)

// A client resuming a persistent session while the registry cannot be read
// or written is held, not refused at once: its CONNECT waits while the
// registry is retried every resumeRetry, up to resumeWait after the CONNECT
// reached Establish, and the client gets its CONNACK as soon as the
// registry answers. The usual cause is a JetStream leader election after a
// node died, which nats-server starts 3-5 s after the leader's last
// heartbeat (internal/node/raftelect.go). A client refused at once goes into
// its own reconnect backoff (paho doubles it: 1, 2, 4, 8 s ...), so one
// refused three times during an election came back seconds after the store
// had.
//
// resumeWait stays well below the load balancer's connack_timeout (3 s by
// default): the CONNACK also waits for what comes before Establish (reading
// and authenticating the CONNECT), which under load took over a second
// (200 clients resuming at once on two cores under -race: 3.2 s with a 2 s
// hold). A CONNACK later than that is a timeout there, which counts
// against the node's health: with many clients resuming at once every
// surviving node would be marked down. "Server unavailable" in time is a
// refusal the load balancer does not count: it tries the next node, which
// holds the client again, so behind it the hold covers about resumeWait
// per surviving node.
const (
	resumeWait  = 1500 * time.Millisecond
	resumeRetry = 250 * time.Millisecond
)

// registryWait is the wait of one Establish, which starts it.
type registryWait struct {
	start   time.Time
	waiting bool // a registry operation failed: the wait is on
}

func newRegistryWait() registryWait { return registryWait{start: time.Now()} }

// until is when the wait ends.
func (w *registryWait) until() time.Time { return w.start.Add(resumeWait) }

// retry is called after a registry operation failed: it returns true,
// after resumeRetry, if the wait allows another try.
func (w *registryWait) retry(ctx context.Context) bool {
	w.waiting = true
	if time.Until(w.until()) < resumeRetry {
		return false
	}
	return sleep(ctx, resumeRetry)
}

// attempt is the context of one registry operation: three times timeout,
// or once the wait is on, timeout and not beyond the end of the wait (so
// that one operation hanging until a new leader answers does not outlast
// it).
func (w *registryWait) attempt(timeout time.Duration) (context.Context, context.CancelFunc) {
	if !w.waiting {
		return context.WithTimeout(context.Background(), 3*timeout)
	}
	d := time.Now().Add(timeout)
	if end := w.until(); end.Before(d) {
		d = end
	}
	return context.WithDeadline(context.Background(), d)
}

// pause is the wait after the n-th compare-and-set conflict of one
// Establish: none after the first (another node wrote: read and write
// again), then conflictPause, doubling, not beyond the end of the wait. It
// returns false if the node is stopping. A conflict is also a write to the
// key still in process on the leader (proposed, not yet applied:
// nats-server refuses any compare-and-set on that key meanwhile, "wrong
// last sequence", err_code 10164), which after nodes restart lasted about
// half a second, every read answering the same revision: five tries back to
// back took 6 ms, and the client was refused "session registry busy" four
// and five times in a row (2 of 10 runs of TestRefusedResumeLeavesNoSession;
// with the pause, once in 1 run of 10).
func (w *registryWait) pause(ctx context.Context, n int) bool {
	if n < 2 {
		return true
	}
	d := min(conflictPause<<(n-2), time.Until(w.until()))
	return d <= 0 || sleep(ctx, d)
}

// sleep waits d; it returns false if ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

const conflictPause = 50 * time.Millisecond
