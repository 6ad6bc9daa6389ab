package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/relay"
)

// ErrNoServer is returned by Connect when no server is available or every
// choice failed.
var ErrNoServer = errors.New("no server available")

// ErrDeclined marks an attempt the server answered but declined (an MQTT
// "server unavailable"/"busy" CONNACK): the next server is tried, but the
// server is alive, so it does not count against its health.
var ErrDeclined = errors.New("server declined the connection")

// Connect places the client of lease l (l.Key says what it is placed by):
// it picks a server with the upstream's policy and attempts the MQTT
// handshake there (dial, PROXY header, the client's CONNECT, the broker's
// CONNACK). On failure the server is excluded and the next choice is tried,
// up to 1+connect_retries attempts, so a client never sees a dead server
// while another is up; which failures count against their servers is
// blame's call. Under max_connect_rate the client first waits for
// the picked server's turn; a server whose turn would come too close to
// ctx's deadline (within minAttempt of it), or that goes out of service
// while the client waits (or as its turn comes), is passed over without
// counting as an attempt, and a turn whose attempt failed before the
// broker's answer is given back to the clients behind. A client with less
// than minAttempt left is not dialled, and one whose dial or CONNACK wait
// its own deadline cut short stops there: both get ErrBusy, and the
// server is not charged. A server in slow
// start takes only its share (see Admits). On success l has the connection
// counted on its server until Release; the caller gets the server
// connection and the server's answer to the CONNECT with whatever arrived
// with it (the client is owed all of it).
func (u *Upstream) Connect(ctx context.Context, l *Lease, hs *Handshake) (net.Conn, mqttwire.Reply, error) {
	first, err := u.first(hs)
	if err != nil {
		return nil, mqttwire.Reply{}, err
	}
	var tried []*Server
	var errs []error
	busy, late := false, false
	b := blame{u: u}
	floor := u.attemptFloor()
	dl, hasDL := ctx.Deadline()
	for attempts := 0; attempts <= u.cfg.ConnectRetries; {
		s := u.pick(&l.Key, tried)
		if s == nil {
			break
		}
		tried = append(tried, s)
		t, err := u.pace(ctx, s, floor)
		if errors.Is(err, errReleased) {
			continue // s went out of service while the client waited: pick again
		}
		if err != nil {
			busy = true
			continue
		}
		if !s.Available() { // went out of service as the turn came
			t.refund()
			continue
		}
		if hasDL && time.Until(dl) < floor { // too late for any server
			t.refund()
			late = true
			break
		}
		attempts++
		s.active.Add(1) // counted before dialling, so concurrent picks see it
		l.retries = uint16(attempts - 1)
		conn, reply, err := u.attempt(ctx, s, first, hs)
		if err == nil {
			b.answer()
			u.place(l, s)
			return conn, reply, nil
		}
		s.active.Add(-1)
		b.failed(s, err) // a passive failure may take s down and release its waiters
		errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		if errors.Is(err, errClientTimeout) {
			// The client's time ran out, not the server's: the turn was
			// spent on a server that may well be answering (not given back:
			// it has the CONNECT), and the client is told "busy".
			late = true
			break
		}
		if !errors.Is(err, ErrDeclined) {
			t.refund() // nothing placed: the next client need not wait for it
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, mqttwire.Reply{}, connectErr(errs, busy, late)
}

// minAttempt is the least time a client must have left, of its
// connect_timeout, for a server to be dialled for it (at most half the
// upstream's connack_timeout): with less, the broker would most likely be
// handed a CONNECT (maybe a session takeover) whose answer the load
// balancer could not wait for. Such a client is answered "server busy"
// without a dial, as one whose turn under max_connect_rate would come
// too late.
const minAttempt = 100 * time.Millisecond

func (u *Upstream) attemptFloor() time.Duration {
	return min(minAttempt, u.cfg.ConnackTimeout.D()/2)
}

// place records l's connection on s, which took it.
func (u *Upstream) place(l *Lease, s *Server) {
	s.total.Add(1)
	s.dialOK()
	if t, ok := u.Policy.(balance.Tracker); ok {
		t.Placed(&l.Key, s)
	}
	l.server, l.u = s, u
}

// connectErr is why Connect placed nobody: ErrBusy when the client's
// connect_timeout ran out (late: before an attempt could start, or
// cutting the last one short), with every attempt's error; ErrBusy when
// no server's turn came in time; else ErrNoServer with every attempt's
// error.
func connectErr(errs []error, busy, late bool) error {
	if late && len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrBusy, errors.Join(errs...))
	}
	if len(errs) == 0 && (busy || late) {
		return ErrBusy
	}
	if len(errs) == 0 {
		return ErrNoServer
	}
	return fmt.Errorf("%w: %w", ErrNoServer, errors.Join(errs...))
}

// pick asks the policy for a server not yet tried; while a server is in
// slow start it is skipped for connections it does not admit, unless no
// other server is left.
func (u *Upstream) pick(c *balance.Conn, tried []*Server) *Server {
	skip := func(bs balance.Server) bool { return slices.Contains(tried, bs.(*Server)) }
	if u.slowStarting() {
		warm := func(bs balance.Server) bool { return skip(bs) || !u.Admits(bs.(*Server), c) }
		if bs := u.Policy.Pick(c, warm); bs != nil {
			return bs.(*Server)
		}
	}
	if bs := u.Policy.Pick(c, skip); bs != nil {
		return bs.(*Server)
	}
	return nil
}

// passiveFailure counts a failed attempt against s's health.
func (u *Upstream) passiveFailure(s *Server, err error) {
	s.fails.Add(1)
	hc := u.cfg.HealthCheck
	s.report(err, hc.Rise, hc.Fall, false, 0)
	if hc.Type == "none" && !s.Healthy() {
		time.AfterFunc(hc.Interval.D(), s.markUp) // passive only: retry after interval
	}
}

// serverKeepAlive turns TCP keep-alive on for server connections with the
// kernel's timings: one setsockopt instead of Go's four. A broker that dies
// is found by health checks and by the client's own MQTT keep alive; the
// probes only reap what is left.
var serverKeepAlive = net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}

// dial opens a TCP connection to s: on a relay loop when the handshake's
// client will be relayed there and s is addressed by IP (into the client's
// slot, or one of its own: relay.Dial), else through the net package
// (dialTCP).
func (u *Upstream) dial(ctx context.Context, s *Server, hs *Handshake) (net.Conn, error) {
	if hs.Loop && s.ip {
		deadline := time.Now().Add(u.cfg.DialTimeout.D())
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		var c *relay.ServerConn
		var err error
		if hs.Client != nil {
			c, err = hs.Client.Dial(s.ipAddr, deadline, true)
		} else {
			c, err = relay.Dial(s.ipAddr, deadline, true)
		}
		if !errors.Is(err, relay.ErrNoLoop) {
			if err != nil {
				return nil, err // (a nil *ServerConn is not a nil net.Conn)
			}
			return c, nil
		}
	}
	c, err := u.dialTCP(ctx, s)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// dialTCP opens a TCP connection to s within the upstream's dial timeout
// and ctx's deadline. A server addressed by IP is dialled with a context
// carrying the earlier of the two as its deadline (Until), which net.Dialer
// applies to the connect as a socket deadline, with no context, timer or
// map entry of its own. One named by host keeps Dialer.Timeout, whose
// context bounds the name lookup too, as does a ctx that is never canceled
// (Done nil: net.Dialer would not apply Until's deadline).
func (u *Upstream) dialTCP(ctx context.Context, s *Server) (*net.TCPConn, error) {
	d := net.Dialer{KeepAliveConfig: serverKeepAlive}
	timeout := u.cfg.DialTimeout.D()
	if s.ip && ctx.Done() != nil {
		if dl := time.Now().Add(timeout); !hasDeadlineBy(ctx, dl) {
			ctx = Until(ctx, dl)
		}
	} else {
		d.Timeout = timeout
	}
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
