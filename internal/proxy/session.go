package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/listener"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/relay"
	"github.com/mqlb/mqlb/internal/upstream"
)

// Results label connections_total and the access log. ResultOK is a
// connection relayed to a server; every other result is a refusal.
const (
	ResultOK             = "ok"
	ResultEOF            = "eof"             // closed before sending anything (port probe)
	ResultTimeout        = "timeout"         // no complete CONNECT within connect_timeout
	ResultNotMQTT        = "not_mqtt"        // first packet not a CONNECT (HTTP, TLS on the plain port...)
	ResultMalformed      = "malformed"       // a CONNECT that breaks the spec
	ResultTooLarge       = "too_large"       // over max_connect_packet
	ResultBadVersion     = "bad_version"     // unsupported protocol level (answered 0x01)
	ResultProxyError     = "proxy_error"     // trusted peer sent no or a bad PROXY header
	ResultProxyUntrusted = "proxy_untrusted" // PROXY header from a peer not trusted
	ResultTLSError       = "tls_error"       // TLS handshake failed
	ResultWSError        = "ws_error"        // WebSocket handshake failed
	ResultOverLimit      = "over_limit"      // max_connections reached
	ResultRateLimited    = "rate_limited"    // connect_rate_per_ip exceeded
	ResultNoServer       = "no_server"       // no server could take it
	ResultError          = "error"           // anything else (socket errors)
)

// session is one client connection's way through the proxy.
type session struct {
	p       *Proxy
	rt      *Runtime
	set     *listener.Settings
	tcp     *net.TCPConn
	over    bool
	cl      *listener.Client
	connect mqttwire.Connect
	data    []byte // bytes read from the client so far (the CONNECT and any after it)
	rec     Record
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// serve takes the connection as far as it goes; true means it is being
// relayed and the relay will end the session.
func (s *session) serve() bool {
	deadline := s.rec.Start.Add(s.rt.Limits.ConnectTimeout.D())
	cl, err := listener.Prepare(s.tcp, s.set, deadline)
	if err != nil {
		s.fail(prepareResult(err), err)
		return false
	}
	s.cl = cl
	s.rec.Remote = cl.Remote.String()
	s.rec.CertCN = cl.CertCN()
	bp := bufPool.Get().(*[]byte)
	ok := s.inspect(*bp)
	var out *outbound
	if ok {
		s.tcp.SetDeadline(time.Time{})
		ok = s.admit()
	}
	u := s.rt.Upstreams.Get(s.set.Upstream)
	if ok {
		out, err = s.outbound(u) // copies the client's bytes out of the buffer
	}
	*bp, s.data = s.data[:0], nil
	bufPool.Put(bp)
	if !ok {
		return false
	}
	if err != nil {
		s.fail(ResultError, err)
		return false
	}
	return s.proxy(u, out)
}

// inspect reads the CONNECT and fills the record from it.
func (s *session) inspect(buf []byte) bool {
	start := time.Now()
	c, data, err := mqttwire.ReadConnect(s.cl.Conn, buf, s.rt.Limits.MaxConnectPacket)
	s.data = data
	s.p.metrics.inspect.Observe(time.Since(start).Seconds())
	s.rec.BytesIn = int64(len(data))
	if errors.Is(err, mqttwire.ErrUnsupportedVersion) {
		s.connect = c
		s.refuse(mqttwire.RefuseBadVersion, ResultBadVersion)
		return false
	}
	if err != nil {
		s.fail(s.inspectResult(err), err)
		return false
	}
	s.connect = c
	s.rec.ClientID, s.rec.Username, s.rec.Version = c.ClientID, c.Username, c.Version
	return true
}

func (s *session) inspectResult(err error) string {
	switch {
	case errors.Is(err, io.EOF) && len(s.data) == 0:
		return ResultEOF
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ResultTimeout
	case errors.Is(err, mqttwire.ErrTooLarge):
		return ResultTooLarge
	case errors.Is(err, mqttwire.ErrNotConnect):
		if s.set.Trusted != nil && len(s.data) > 0 && (s.data[0] == 'P' || s.data[0] == '\r') {
			return ResultProxyUntrusted
		}
		return ResultNotMQTT
	case errors.Is(err, mqttwire.ErrMalformed):
		return ResultMalformed
	}
	return ResultError
}

func prepareResult(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ResultTimeout
	case errors.Is(err, listener.ErrProxyHeader):
		return ResultProxyError
	case errors.Is(err, listener.ErrTLS):
		return ResultTLSError
	case errors.Is(err, listener.ErrWebSocket):
		return ResultWSError
	}
	return ResultError
}

// admit applies the connection limit, the per-IP connect rate and
// authentication (auth.go).
func (s *session) admit() bool {
	if s.over {
		s.refuse(mqttwire.RefuseBusy, ResultOverLimit)
		return false
	}
	if s.rt.limiter != nil && !s.rt.limiter.allow(s.cl.Remote.Addr()) {
		s.refuse(mqttwire.RefuseRateLimited, ResultRateLimited)
		return false
	}
	return s.authorize()
}

// proxy connects a server and starts relaying; true means the relay now
// owns the session.
func (s *session) proxy(u *upstream.Upstream, out *outbound) bool {
	s.rec.Upstream = s.set.Upstream
	bc := &balance.Conn{ClientID: s.connect.ClientID, Username: s.connect.Username, Source: s.cl.Remote.Addr()}
	srv, sv, err := u.Connect(s.p.ctx, bc, out.attempt)
	if err != nil {
		s.p.noisy.warn(s.p.log, "no-server/"+u.Name, "no server for client", "remote", s.rec.Remote,
			"listener", s.rec.Listener, "client_id", s.rec.ClientID, "upstream", u.Name, "error", err)
		s.refuse(mqttwire.RefuseUnavailable, ResultNoServer)
		return false
	}
	s.rec.Server, s.rec.ServerAddr, s.rec.Connack = sv.Name(), sv.Address(), out.connack
	s.rec.Result = ResultOK
	s.p.metrics.result(s.rec.Listener, ResultOK)
	return s.relay(srv, &placed{u: u, sv: sv, bc: bc}, out.reply)
}

// placed is where a relayed connection went, to undo at the end.
type placed struct {
	u  *upstream.Upstream
	sv *upstream.Server
	bc *balance.Conn
}

func (pl *placed) release(in, out int64) {
	pl.sv.Release()
	pl.u.Released(pl.bc, pl.sv)
	pl.sv.ClosedIn.Add(in)
	pl.sv.ClosedOut.Add(out)
}

// relay forwards the server's first bytes (the CONNACK) and starts relaying
// both directions. From here the table entry carries the connection: the
// session is let go, and the relay's end finishes the entry.
func (s *session) relay(srv net.Conn, pl *placed, reply []byte) bool {
	client := s.cl.Conn
	if s.cl.Plain() {
		client = s.cl.TCP // plain TCP both sides: the splice path
	}
	c := &Conn{ID: s.p.conns.newID(), Record: s.rec, placed: pl, rt: s.rt}
	c.Stats.In.Store(s.rec.BytesIn)
	c.Stats.Out.Store(s.rec.BytesOut + int64(len(reply)))
	s.p.conns.add(c) // listed before the client sees its CONNACK
	if _, err := client.Write(reply); err != nil {
		s.p.conns.remove(c)
		srv.Close()
		pl.release(s.rec.BytesIn, 0)
		s.rec.Reason = "client_error"
		return false
	}
	p := s.p
	c.started(relay.Start(client, srv, &c.Stats, relay.Options{FinTimeout: 10 * time.Second},
		func(res relay.Result) { p.relayed(c, res) }))
	return true
}

// relayed finishes a relayed connection: table, server counts, access log.
func (p *Proxy) relayed(c *Conn, res relay.Result) {
	p.conns.remove(c)
	c.Reason = res.Reason
	c.BytesIn, c.BytesOut = c.Stats.In.Load(), c.Stats.Out.Load()
	c.placed.release(c.BytesIn, c.BytesOut)
	c.Duration = time.Since(c.Start)
	c.rt.AccessLog.Write(&c.Record)
	p.active.Add(-1)
	p.wg.Done()
}

// fail ends a connection that is refused without an MQTT answer.
func (s *session) fail(result string, err error) {
	s.rec.Result = result
	if err != nil && result != ResultEOF {
		s.rec.Reason = err.Error()
		s.p.log.Debug("connection refused", "remote", s.rec.Remote, "listener", s.rec.Listener, "result", result, "error", err)
	}
}

// refuse answers a CONNACK with the refusal in the client's protocol version
// (when that version has a code for it) and ends the connection.
func (s *session) refuse(why mqttwire.Refusal, result string) {
	s.rec.Result = result
	code, ok := mqttwire.RefusalCode(s.connect.Version, why)
	if !ok {
		return
	}
	s.rec.Connack = int(code)
	version := s.connect.Version
	if result == ResultBadVersion {
		version = mqttwire.V311 // the 0x01 answer has the v3.1.1 shape [MQTT-3.1.2-2]
	}
	w := s.cl.Conn
	w.SetWriteDeadline(time.Now().Add(time.Second))
	n, _ := w.Write(mqttwire.AppendConnack(nil, version, false, code))
	s.rec.BytesOut += int64(n)
}
