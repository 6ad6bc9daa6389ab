package proxy

import (
	"cmp"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/mqlb/mqlb/internal/listener"
	"github.com/mqlb/mqlb/internal/mqttwire"
)

// Results label connections_total and the access log. ResultOK is a
// connection relayed to a server that accepted it; ResultRefused one
// relayed to a server that refused it (its CONNACK code is in the record);
// every other result is the load balancer's refusal.
const (
	ResultOK             = "ok"
	ResultRefused        = "refused_by_server"  // the server answered the CONNECT with a refusal (code in connack)
	ResultEOF            = "eof"                // the client closed (or reset) before a whole CONNECT: a port probe, or a client gone mid-handshake
	ResultTimeout        = "timeout"            // no complete CONNECT within connect_timeout
	ResultNotMQTT        = "not_mqtt"           // first packet not a CONNECT (HTTP, TLS on the plain port...)
	ResultMalformed      = "malformed"          // a CONNECT that breaks the spec
	ResultDisallowedChar = "disallowed_char"    // a control character or non-character in the client id, user name, will topic or a v5 string property
	ResultTooLarge       = "too_large"          // over max_connect_packet
	ResultBadVersion     = "bad_version"        // unsupported protocol level (answered 0x01)
	ResultProxyError     = "proxy_error"        // trusted peer sent no or a bad PROXY header
	ResultProxyUntrusted = "proxy_untrusted"    // PROXY header from a peer not trusted (or to a listener without proxy_protocol)
	ResultTLSError       = "tls_error"          // TLS handshake failed
	ResultWSError        = "ws_error"           // WebSocket handshake failed
	ResultOverLimit      = "over_limit"         // max_connections reached
	ResultOverIPLimit    = "over_ip_limit"      // max_connections_per_ip reached (closed at accept)
	ResultOverPending    = "over_pending_limit" // closed in its handshake to make room (max_pending)
	ResultRateLimited    = "rate_limited"       // connect_rate_per_ip exceeded
	ResultNoServer       = "no_server"          // no server could take it
	ResultBusy           = "busy"               // max_connect_rate: no server's turn came within connect_timeout
	ResultError          = "error"              // anything else (socket errors)
)

// inspectFailed records why the CONNECT was not read; an unsupported
// protocol level is answered 0x01, a string brokers such as mosquitto close
// on (mqttwire.ErrDisallowedChar) the code for its field, and a v5 CONNECT
// over limits.max_connect_packet 0x95 (v3.x has no code for the last two:
// closed).
func (s *session) inspectFailed(err error) {
	if errors.Is(err, mqttwire.ErrUnsupportedVersion) {
		s.refuse(mqttwire.RefuseBadVersion, ResultBadVersion)
		return
	}
	if why, ok := mqttwire.RefusalOf(err); ok {
		s.refuse(why, ResultDisallowedChar)
		s.c.reason = err.Error()
		return
	}
	if errors.Is(err, mqttwire.ErrNotConnect) {
		err = cmp.Or(s.set.Untrusted(s.cl.Remote.Addr(), s.data), err)
	}
	s.fail(s.inspectResult(err), err)
	if s.c.result == ResultTooLarge && s.connect.Version == mqttwire.V5 {
		s.refuse(mqttwire.RefuseTooLarge, ResultTooLarge)
		s.discardRest()
	}
}

// Bounds of discardRest.
const (
	discardMax  = 1 << 20
	discardTime = time.Second
)

// discardRest reads and drops what the client still sends of a refused
// CONNECT, until it closes (a v5 client does on a refusing CONNACK), up to
// discardMax bytes or for discardTime. Closed with those bytes unread, the
// socket would be reset, and a reset discards the CONNACK still on its way.
func (s *session) discardRest() {
	r := s.cl.Conn
	r.SetReadDeadline(time.Now().Add(discardTime))
	var b [4096]byte
	for n := 0; n < discardMax; {
		k, err := r.Read(b[:])
		n += k
		if err != nil {
			return
		}
	}
}

func (s *session) inspectResult(err error) string {
	switch {
	case errors.Is(err, io.EOF) && len(s.data) == 0:
		return ResultEOF
	case isTimeout(err):
		return ResultTimeout
	case errors.Is(err, mqttwire.ErrTooLarge):
		return ResultTooLarge
	case errors.Is(err, listener.ErrProxyUntrusted):
		return ResultProxyUntrusted
	case errors.Is(err, mqttwire.ErrNotConnect):
		return ResultNotMQTT
	case errors.Is(err, mqttwire.ErrMalformed):
		return ResultMalformed
	case clientGone(err):
		return ResultEOF // the client went away mid-CONNECT: its doing, not the LB's
	}
	return ResultError
}

// clientGone reports an error that says the client closed or reset the
// connection: EOF, EOF inside a record, header or packet, or a reset.
func clientGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// isTimeout reports a deadline that passed; the WebSocket library reports
// it as a net.Error of its own, not os.ErrDeadlineExceeded.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// prepareResult labels a failed PROXY header, TLS handshake or WebSocket
// upgrade; a client that closed in the middle of one is eof (the reason,
// the error, says which stage), not the stage's error.
func prepareResult(err error) string {
	switch {
	case isTimeout(err):
		return ResultTimeout
	case clientGone(err):
		return ResultEOF
	case errors.Is(err, listener.ErrProxyHeader):
		return ResultProxyError
	case errors.Is(err, listener.ErrProxyUntrusted):
		return ResultProxyUntrusted
	case errors.Is(err, listener.ErrTLS):
		return ResultTLSError
	case errors.Is(err, listener.ErrWebSocket):
		return ResultWSError
	}
	return ResultError
}

// fail records a refusal without an MQTT answer.
func (s *session) fail(result string, err error) {
	c := s.c
	if c.ticket.Evicted() {
		result = ResultOverPending // the gate closed it: that is why it failed
	}
	c.result = result
	switch {
	case err == nil:
	case result == ResultEOF && s.cl != nil && len(s.data) == 0:
		if !errors.Is(err, io.EOF) { // a reset; a plain close is a port probe: no reason
			c.reason = err.Error()
		}
	case result == ResultEOF && s.cl != nil:
		c.reason = "CONNECT incomplete: " + err.Error()
	default:
		c.reason = err.Error()
		s.p.log.Debug("connection refused", "remote", c.remote(), "listener", s.set.Name, "result", result, "error", err)
	}
}

// refuse answers a CONNACK with the refusal in the client's protocol version
// (when that version has a code for it); the caller finishes the connection.
func (s *session) refuse(why mqttwire.Refusal, result string) {
	c := s.c
	c.result = result
	code, ok := mqttwire.RefusalCode(s.connect.Version, why)
	if !ok {
		return
	}
	c.connack = connackCode(code)
	version := s.connect.Version
	if result == ResultBadVersion {
		version = mqttwire.V311 // the 0x01 answer has the v3.1.1 shape [MQTT-3.1.2-2]
	}
	w := s.cl.Conn
	w.SetWriteDeadline(time.Now().Add(time.Second))
	n, _ := w.Write(mqttwire.AppendConnack(nil, version, false, code))
	c.Stats.Out.Add(int64(n))
}
