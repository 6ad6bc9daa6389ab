package auth

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/mqlb/mqlb/internal/authhttp"
	"github.com/mqlb/mqlb/internal/config"
)

// Request is what a backend is asked about a connecting client. Its JSON
// form is the HTTP contract shared with the load balancer.
type Request = authhttp.Request

// Result is a backend's answer.
type Result uint8

const (
	// Ignore: the backend does not know the client; the next one is asked.
	Ignore Result = iota
	// Allow: authenticated; Decision.ACL holds the client's own rules.
	Allow
	// Deny: known and refused; no later backend is asked.
	Deny
)

// Decision is a backend's answer with the client's ACL rules (evaluated
// before auth.acl; %c and %u are substituted as there).
type Decision struct {
	Result Result
	ACL    []Rule
}

// Backend is one credential store. An error (store down, timeout, a bad
// answer) refuses the client with server unavailable: fail closed.
// Implementations must be safe for concurrent use and never put the
// password in an error.
type Backend interface {
	Authenticate(ctx context.Context, r Request) (Decision, error)
}

// backendEntry is a built backend with its name for logs and what to close.
type backendEntry struct {
	name    string
	b       Backend
	timeout time.Duration
	closer  io.Closer
}

// buildBackends builds the configured stores; usersFile is auth.users_file.
func buildBackends(cfgs []config.AuthBackend, usersFile string) ([]backendEntry, error) {
	var out []backendEntry
	for i, c := range cfgs {
		b, closer, err := buildBackend(c, usersFile)
		if err != nil {
			closeBackends(out)
			return nil, fmt.Errorf("auth.backends[%d] (%s): %w", i, c.Type, err)
		}
		if c.CacheTTL > 0 {
			b = newCached(b, c.CacheTTL.D(), 100_000)
		}
		out = append(out, backendEntry{name: fmt.Sprintf("%d:%s", i, c.Type), b: b, timeout: c.Timeout.D(), closer: closer})
	}
	return out, nil
}

func buildBackend(c config.AuthBackend, usersFile string) (Backend, io.Closer, error) {
	switch c.Type {
	case "file":
		f := c.UsersFile
		if f == "" {
			f = usersFile
		}
		b, err := newFileBackend(f)
		return b, nil, err
	case "http":
		b := newHTTPBackend(c.URL)
		return b, b, nil
	case "postgres":
		b, err := newPostgresBackend(c)
		return b, b, err
	case "redis":
		b, err := newRedisBackend(c)
		return b, b, err
	case "jwt":
		b, err := newJWTBackend(c)
		return b, nil, err
	}
	return nil, nil, fmt.Errorf("unknown backend type %q", c.Type)
}

func closeBackends(bs []backendEntry) {
	for _, b := range bs {
		if b.closer != nil {
			b.closer.Close()
		}
	}
}

// errNoDecision: every backend ignored the client.
var errNoDecision = errors.New("no backend knows the client")

// chain asks the backends in order, each under its timeout, until one
// allows or denies.
func chain(bs []backendEntry, r Request) (Decision, string, error) {
	for _, be := range bs {
		ctx, cancel := context.WithTimeout(context.Background(), be.timeout)
		d, err := be.b.Authenticate(ctx, r)
		cancel()
		if err != nil {
			return Decision{}, be.name, err
		}
		if d.Result != Ignore {
			return d, be.name, nil
		}
	}
	return Decision{Result: Deny}, "", errNoDecision
}

// cached keeps a backend's decisions (not its errors) for ttl, keyed by a
// hash of the request (password, client IP and protocol version included;
// see requestKey).
type cached struct {
	b    Backend
	ttl  time.Duration
	size int
	mu   sync.Mutex
	m    map[[sha256.Size]byte]cachedDecision
}

type cachedDecision struct {
	d       Decision
	expires time.Time
}

func newCached(b Backend, ttl time.Duration, size int) *cached {
	return &cached{b: b, ttl: ttl, size: size, m: map[[sha256.Size]byte]cachedDecision{}}
}

func (c *cached) Authenticate(ctx context.Context, r Request) (Decision, error) {
	k := requestKey(&r)
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.d, nil
	}
	d, err := c.b.Authenticate(ctx, r)
	if err != nil {
		return d, err
	}
	c.mu.Lock()
	if len(c.m) >= c.size {
		for k, e := range c.m {
			if len(c.m) < c.size*9/10 && now.Before(e.expires) {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = cachedDecision{d: d, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return d, nil
}

// requestKey is a SHA-256 over everything a store may decide on, as the load
// balancer's cache keys (lbauth): client id, user name, password,
// certificate identity, client IP and protocol version. The remote's port is
// left out: it changes with every connection and would defeat the cache.
func requestKey(r *Request) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	remote := r.Remote
	if ap, err := netip.ParseAddrPort(r.Remote); err == nil {
		remote = ap.Addr().String()
	}
	for _, f := range []string{r.ClientID, r.Username, r.Password, r.CertIdentity, remote, string(rune(r.ProtocolVersion))} {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// aclEntry is one ACL rule as HTTP answers, Redis hashes and JWT claims
// carry it: {"allow": true, "access": "publish", "topic": "devices/%c/#"}.
type aclEntry struct {
	Allow  bool   `json:"allow"`
	Access string `json:"access"`
	Topic  string `json:"topic"`
}

// toRules turns entries into rules (access defaults to all) and checks them.
func toRules(es []aclEntry) ([]Rule, error) {
	rules := make([]Rule, 0, len(es))
	for _, e := range es {
		if e.Access == "" {
			e.Access = AccessAll
		}
		rules = append(rules, Rule{Allow: e.Allow, Access: e.Access, Topic: e.Topic})
	}
	if _, err := compileRules(rules); err != nil {
		return nil, err
	}
	return rules, nil
}
