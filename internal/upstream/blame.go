package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// errClientTimeout marks an attempt that timed out because the client's
// time ran out: its connect_timeout, counted from accept, came before the
// server's own dial_timeout or connack_timeout. The server was not given
// its full time, so the failure is not charged to it, and the client is
// answered "server busy" (ErrBusy), as when its turn under
// max_connect_rate would come too late.
var errClientTimeout = errors.New("the client's connect_timeout ran out before the server's timeout")

// blame decides which of one client's failed attempts count against their
// servers' health (passive failures). A dial that fails, a CONNACK that
// does not come in time or a malformed answer are the server's, unless
// the dial or the wait was cut short by the client's own deadline
// (errClientTimeout): then the server had less than its dial_timeout or
// connack_timeout, and nothing is charged. A server
// that closes the connection after reading the client's CONNECT and before
// any CONNACK may be refusing that CONNECT rather than failing: mosquitto
// closes on a client id, user name or will topic holding a control
// character. Such a close is charged only once another server has answered
// the same CONNECT with a CONNACK (any code); when every server tried
// closed on it, the CONNECT is the likely cause and none is charged, else
// any client could mark every server down with `fall` such CONNECTs. A
// broker that closes on everyone fails its health checks instead.
type blame struct {
	u        *Upstream
	answered bool // a server answered this client's CONNECT
	held     []heldFailure
}

// heldFailure is a close not charged yet.
type heldFailure struct {
	s   *Server
	err error
}

// failed records an attempt on s that failed with err.
func (b *blame) failed(s *Server, err error) {
	switch {
	case errors.Is(err, errClientTimeout): // the client's deadline, not the server's
	case errors.Is(err, ErrDeclined): // a CONNACK: alive, and the CONNECT is one a server answers
		b.answer()
	case closedOnConnect(err) && !b.answered:
		b.held = append(b.held, heldFailure{s, err})
	default:
		b.u.passiveFailure(s, err)
	}
}

// answer records that a server answered the CONNECT with a CONNACK: the
// closes held so far were their servers' doing.
func (b *blame) answer() {
	b.answered = true
	for _, f := range b.held {
		b.u.passiveFailure(f.s, f.err)
	}
	b.held = nil
}

// closedOnConnect reports an attempt the server ended by closing or
// resetting the connection, after the dial, before any byte of a CONNACK.
func closedOnConnect(err error) bool {
	if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// clientsFault returns err marked with errClientTimeout when the attempt
// timed out at ctx's deadline while that came before own (the server's own
// deadline for the step: dial_timeout or connack_timeout). Anything else
// is returned as is.
func clientsFault(ctx context.Context, own time.Time, err error) error {
	if err == nil {
		return nil
	}
	if d, ok := ctx.Deadline(); ok && d.Before(own) && isTimeout(err) {
		return fmt.Errorf("%w: %w", errClientTimeout, err)
	}
	return err
}

// isTimeout reports a deadline (socket or context) that ran out.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
