package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
)

// ErrNoServer is returned by Connect when no server is available or every
// choice failed.
var ErrNoServer = errors.New("no server available")

// ErrDeclined marks an attempt the server answered but declined (an MQTT
// "server unavailable"/"busy" CONNACK): the next server is tried, but the
// server is alive, so it does not count against its health.
var ErrDeclined = errors.New("server declined the connection")

// Connect places a client connection: it picks a server with the
// upstream's policy and attempts the MQTT handshake there (dial, PROXY
// header, the client's CONNECT, the broker's CONNACK). On failure the server
// is excluded and the next choice is tried, up to 1+connect_retries
// attempts, so a client never sees a dead server while another is up. The
// lease returned has the connection counted on its server until Release.
func (u *Upstream) Connect(ctx context.Context, c *balance.Conn, hs *Handshake) (*Lease, error) {
	first, err := u.first(hs)
	if err != nil {
		return nil, err
	}
	var tried []*Server
	skip := func(bs balance.Server) bool { return slices.Contains(tried, bs.(*Server)) }
	var errs []error
	for range u.cfg.ConnectRetries + 1 {
		bs := u.Policy.Pick(c, skip)
		if bs == nil {
			break
		}
		s := bs.(*Server)
		s.active.Add(1) // counted before dialling, so concurrent picks see it
		conn, reply, err := u.attempt(ctx, s, first, hs.Version)
		if err == nil {
			s.total.Add(1)
			s.dialOK()
			if t, ok := u.Policy.(balance.Tracker); ok {
				t.Placed(c, s)
			}
			l := &Lease{Server: s, Conn: conn, reply: reply, u: u, bc: c}
			s.leases.add(l)
			return l, nil
		}
		s.active.Add(-1)
		if !errors.Is(err, ErrDeclined) {
			u.passiveFailure(s, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		tried = append(tried, s)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, ErrNoServer
	}
	return nil, fmt.Errorf("%w: %w", ErrNoServer, errors.Join(errs...))
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

// dialTCP opens a TCP connection to s within the upstream's dial timeout.
func (u *Upstream) dialTCP(ctx context.Context, s *Server) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: u.cfg.DialTimeout.D(), KeepAliveConfig: serverKeepAlive}
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
