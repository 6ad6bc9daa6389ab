package lbauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/authhttp"
	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
)

// Request is the JSON body POSTed to the authentication service (the
// contract in DESIGN.md, shared with the nodes' http backend).
type Request = authhttp.Request

// maxAnswer bounds how much of an answer is read.
const maxAnswer = 64 << 10

// service is one upstream's auth: type http.
type service struct {
	upstream string
	url      string
	timeout  time.Duration
	client   *http.Client
	sem      chan struct{} // bounds requests in flight
	cache    *cache        // nil: no cache
	m        *Metrics
	log      *slog.Logger
	lastWarn atomic.Int64 // unix nanos of the last warning (rate limit)
}

func newService(upstream string, c *config.UpstreamAuth, m *Metrics, log *slog.Logger) (*service, error) {
	if c.Type != "http" {
		return nil, fmt.Errorf("unknown type %q", c.Type)
	}
	s := &service{upstream: upstream, url: c.URL, timeout: c.Timeout.D(), m: m, log: log,
		sem:    make(chan struct{}, c.MaxConcurrent),
		client: authhttp.NewClient(c.MaxConcurrent)}
	if c.CacheTTL > 0 {
		s.cache = newCache(c.CacheTTL.D(), c.CacheSize)
	}
	return s, nil
}

// admit asks the service (or the cache) about the client of c, as v
// describes it so far; it returns nil when the client may pass.
func (s *service) admit(ctx context.Context, c *Conn, v *Verdict, pkt []byte) *Verdict {
	pw, _, err := mqttwire.ConnectPassword(pkt)
	if err != nil { // the packet was validated before; a bug if this fails
		r := deny(ResultAuthError, mqttwire.RefuseUnavailable, err, v.Identity)
		return &r
	}
	certID := v.Identity
	if certID == "" { // no tls.identity on the listener: the verified CN, if any
		certID = (&identity{from: "cn"}).of(c.TLS)
	}
	req := Request{ClientID: v.ClientID, Username: v.Username, Password: string(pw), CertIdentity: certID,
		Remote: c.Remote.String(), ProtocolVersion: c.Connect.Version}
	allow, err := s.decide(ctx, &req)
	switch {
	case err != nil:
		s.m.result(s.upstream, "error")
		s.warn("authentication service failed; client refused", "client_id", req.ClientID, "remote", req.Remote, "error", err)
		r := deny(ResultAuthError, mqttwire.RefuseUnavailable, err, v.Identity)
		return &r
	case !allow:
		s.m.result(s.upstream, "deny")
		r := deny(ResultNotAuthorized, mqttwire.RefuseNotAuthorized, errors.New("authentication service denied"), v.Identity)
		return &r
	}
	s.m.result(s.upstream, "allow")
	return nil
}

// decide returns the cached decision or asks the service.
func (s *service) decide(ctx context.Context, req *Request) (bool, error) {
	var key cacheKey
	if s.cache != nil {
		key = keyOf(req)
		if allow, ok := s.cache.get(key); ok {
			s.m.cacheHit(s.upstream)
			return allow, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("waiting for a free request slot: %w", ctx.Err())
	}
	defer func() { <-s.sem }()
	start := time.Now()
	allow, err := s.ask(ctx, req)
	s.m.observe(s.upstream, time.Since(start))
	if err == nil && s.cache != nil {
		s.cache.put(key, allow)
	}
	return allow, err
}

// ask POSTs the request. Errors never quote the body sent.
func (s *service) ask(ctx context.Context, req *Request) (bool, error) {
	allow, _, err := authhttp.Ask(ctx, s.client, s.url, req, maxAnswer)
	return allow, err
}

// warn logs at most once a second: a failing service fails every client.
func (s *service) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last < int64(time.Second) || !s.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg, append([]any{"upstream", s.upstream}, args...)...)
}
