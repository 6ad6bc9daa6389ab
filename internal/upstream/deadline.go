package upstream

import (
	"context"
	"time"
)

// Until returns a context with parent's values and cancellation (its Done
// is parent's Done) and deadline d, without what context.WithDeadline costs
// per call: a timer, and a place in parent's list of children under
// parent's lock (the proxy's context is every connection's parent). Its
// Done is not closed at d: Err reports context.DeadlineExceeded from d on,
// and whoever waits must bound the wait by Deadline — as Connect does: the
// pacer refuses a turn after the deadline, dials and CONNACK waits set
// socket deadlines from it. It is meant for Connect and nothing wider.
// net.Dialer applies a context's deadline to a connect in progress only
// when its Done is not nil: dialTCP gives a parent that is never canceled
// Dialer.Timeout instead.
func Until(parent context.Context, d time.Time) context.Context {
	return &untilCtx{Context: parent, d: d}
}

type untilCtx struct {
	context.Context
	d time.Time
}

func (c *untilCtx) Deadline() (time.Time, bool) { return c.d, true }

func (c *untilCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.d) {
		return context.DeadlineExceeded
	}
	return nil
}

// hasDeadlineBy reports whether ctx's deadline comes no later than t.
func hasDeadlineBy(ctx context.Context, t time.Time) bool {
	d, ok := ctx.Deadline()
	return ok && !d.After(t)
}
