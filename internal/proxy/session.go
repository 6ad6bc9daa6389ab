package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mqlb/mqlb/internal/listener"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/relay"
	"github.com/mqlb/mqlb/internal/upstream"
)

// session is one client connection on its way to a server: what the path
// needs until the relay owns the connection. What outlives it (the record,
// the lease) is in c.
type session struct {
	p       *Proxy
	c       *Conn
	set     *listener.Settings
	u       *upstream.Upstream
	conn    net.Conn // as accepted: a *net.TCPConn or a *relay.ClientConn
	over    bool     // accepted over limits.max_connections
	cl      *listener.Client
	connect mqttwire.Connect
	data    []byte         // bytes read from the client so far (the CONNECT and any after it)
	server  net.Conn       // the server connection, until the relay owns it
	reply   mqttwire.Reply // the server's answer to the CONNECT, owed to the client
	relayed bool           // the relay owns the connection and will finish it
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// enter finds the listener's route in the connection's generation and
// passes the gate, which counts the connection per client address and as
// pending from accept. A peer that must send a PROXY header is counted by
// the client address the header names instead (see prepare).
func (s *session) enter(key string) bool {
	c := s.c
	route, ok := c.rt.Route(key)
	if !ok { // its listener was closed by a reload just after accepting it
		c.result, c.reason = ResultError, "listener closed"
		return false
	}
	s.set, s.u = route.Listener, route.Upstream
	c.listener = s.set
	ip := c.lease.Key.Source // the socket peer, as Handle recorded it
	if s.set.Trusts(ip) {
		ip = netip.Addr{}
	}
	l := c.rt.Limits
	if !s.p.gate.Enter(&c.ticket, s.conn, ip, l.MaxPerIP, l.MaxPending) {
		c.result = ResultOverIPLimit
		return false
	}
	return true
}

// serve takes the connection as far as it goes, one stage after the other:
// prepare → inspect → admit → connect → relay. true means it is being
// relayed and the relay will finish it; false, the caller finishes it.
func (s *session) serve() bool {
	if !s.prepare() {
		return false
	}
	bp := bufPool.Get().(*[]byte)
	ok := s.inspect(*bp) && s.admit() && s.connectServer() // the server has the client's bytes: the buffer is free after
	*bp, s.data = s.data[:0], nil
	bufPool.Put(bp)
	return ok && s.relay()
}

// prepare reads the PROXY header, does the TLS handshake and the WebSocket
// upgrade, under the deadline that also covers the CONNECT. The client
// address a header names is the connection's from the moment it is read:
// the handshakes after it are logged and counted against
// limits.max_connections_per_ip by it.
func (s *session) prepare() bool {
	c := s.c
	deadline := c.start.Add(c.rt.Limits.ConnectTimeout.D())
	cl, err := listener.Open(s.conn, s.set, deadline)
	if err != nil {
		s.fail(prepareResult(err), err)
		return false
	}
	if cl.Proxied { // else it is the address Handle recorded
		c.setRemote(cl.Remote)
		if !c.ticket.CountIP(cl.Remote.Addr(), c.rt.Limits.MaxPerIP) {
			c.result = ResultOverIPLimit
			return false
		}
	}
	if err := cl.Handshake(s.set, deadline); err != nil {
		s.fail(prepareResult(err), err)
		return false
	}
	s.cl = cl
	c.setCert(cl.CertCN(), "")
	return true
}

// inspect reads the CONNECT and fills the record from it.
func (s *session) inspect(buf []byte) bool {
	c := s.c
	start := time.Now()
	cn, data, err := mqttwire.ReadConnect(s.cl.Conn, buf, c.rt.Limits.MaxConnectPacket)
	c.ticket.Settled() // the handshake is over, one way or the other
	s.data = data
	s.p.metrics.inspect.Observe(time.Since(start).Seconds())
	c.Stats.In.Store(int64(len(data)))
	s.connect = cn
	if err != nil {
		s.inspectFailed(err)
		return false
	}
	s.cl.Raw.SetDeadline(time.Time{})
	c.lease.Key.ClientID, c.lease.Key.Username, c.version = cn.ClientID, cn.Username, cn.Version
	return true
}

// admit decides whether the client may go on: limits.max_connections, the
// per-IP connect rate and authentication (auth.go): after the CONNECT is
// known, before any server is dialled.
func (s *session) admit() bool {
	if s.over {
		s.refuse(mqttwire.RefuseBusy, ResultOverLimit)
		return false
	}
	if l := s.c.rt.limiter; l != nil && !l.allow(s.cl.Remote.Addr()) {
		s.refuse(mqttwire.RefuseRateLimited, ResultRateLimited)
		return false
	}
	return s.authorize()
}

// connectServer places the client on a server of the listener's upstream
// (upstream.Connect: pick, dial, PROXY header, CONNECT, CONNACK, retries).
func (s *session) connectServer() bool {
	c := s.c
	c.upstream = s.u
	s.data = append(s.data, s.cl.TakePending()...)
	hs := &upstream.Handshake{Version: s.connect.Version, Data: s.data, Source: s.cl.Remote, Dest: s.cl.Local, TLS: s.cl.TLS,
		Loop: s.cl.Plain()}
	if cc, ok := s.cl.Raw.(*relay.ClientConn); ok && hs.Loop {
		hs.Client = cc
	}
	// The client is served within its connect_timeout, counted from accept:
	// queueing under max_connect_rate and every attempt's CONNACK wait.
	// Until: no timer and no child of the proxy's context per connection.
	ctx := upstream.Until(s.p.ctx, c.start.Add(c.rt.Limits.ConnectTimeout.D()))
	server, reply, err := s.u.Connect(ctx, &c.lease, hs)
	if errors.Is(err, upstream.ErrBusy) {
		s.refuse(mqttwire.RefuseBusy, ResultBusy)
		return false
	}
	if err != nil {
		s.p.noisy.Warn(s.p.log, "no-server/"+s.u.Name, "no server for client", "remote", c.remote(),
			"listener", s.set.Name, "client_id", c.lease.Key.ClientID, "upstream", s.u.Name, "error", err)
		s.refuse(mqttwire.RefuseUnavailable, ResultNoServer)
		return false
	}
	s.server, s.reply = server, reply
	return true
}

// relay forwards the server's answer (the CONNACK and whatever followed it)
// and starts relaying both directions. From here the live table carries
// the connection: the session is let go, and the relay's end finishes it.
func (s *session) relay() bool {
	c, p := s.c, s.p
	client := s.cl.Conn
	if s.cl.Plain() {
		client = s.cl.Raw // plain TCP both sides: the loop's path
	}
	reply := s.reply
	c.result = ResultOK
	if reply.Size > 0 { // else the server answered AUTH (v5 enhanced authentication)
		c.connack = connackCode(reply.Code)
		if reply.Code != 0 {
			c.result = ResultRefused
		}
	}
	c.ID = p.conns.newID()
	p.conns.add(c) // listed before the client sees its CONNACK
	if _, err := client.Write(reply.Data); err != nil {
		c.result, c.reason, c.connack = ResultError, "client_error: "+err.Error(), Connack{} // the client never got it
		return false
	}
	c.Stats.Out.Add(int64(len(reply.Data)))
	p.metrics.result(s.set.Name, c.result) // counted once the client has its answer
	c.counted = true
	c.started(relay.Start(client, s.server, &c.Stats, relay.Options{FinTimeout: 10 * time.Second}, c))
	s.relayed = true
	return true
}
