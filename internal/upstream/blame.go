package upstream

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// blame decides which of one client's failed attempts count against their
// servers' health (passive failures). A dial that fails, a CONNACK that
// does not come in time or a malformed answer are the server's. A server
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
