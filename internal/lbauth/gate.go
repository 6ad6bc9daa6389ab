// Package lbauth decides, at the load balancer's admit step, whether a
// client may go on to a broker: the identity in its TLS client certificate
// (which must match, or replaces, its client id or user name) and an
// optional HTTP authentication service per upstream. It refuses before any
// server is dialled, so an unauthenticated device costs no broker anything.
package lbauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
)

// Results for connections_total and the access log.
const (
	ResultNotAuthorized = "not_authorized" // identity mismatch or the service said deny
	ResultAuthError     = "auth_error"     // the service failed: refused as server unavailable
)

// Gate is one config generation's authentication. A nil *Gate admits
// everyone. It is immutable once built; a reload builds a new one.
type Gate struct {
	identities map[string]*identity // by listener name
	services   map[string]*service  // by upstream name
}

// New builds the gate for cfg; it returns nil when no listener has an
// identity and no upstream an auth service.
func New(cfg *config.Config, m *Metrics, log *slog.Logger) (*Gate, error) {
	g := &Gate{identities: map[string]*identity{}, services: map[string]*service{}}
	for _, l := range cfg.Listeners {
		if l.TLS != nil && l.TLS.Identity != nil {
			g.identities[l.Name] = newIdentity(l.TLS.Identity)
		}
	}
	for name, u := range cfg.Upstreams {
		if u.Auth != nil {
			s, err := newService(name, u.Auth, m, log)
			if err != nil {
				return nil, fmt.Errorf("upstreams.%s.auth: %w", name, err)
			}
			g.services[name] = s
		}
	}
	if len(g.identities) == 0 && len(g.services) == 0 {
		return nil, nil
	}
	return g, nil
}

// Conn is what the admit step knows about a client.
type Conn struct {
	Listener string
	Upstream string
	Remote   netip.AddrPort
	TLS      *tls.ConnectionState // nil without TLS
	Connect  *mqttwire.Connect
	Packet   []byte // the CONNECT, exactly; may hold the password
}

// Verdict is the gate's answer.
type Verdict struct {
	OK       bool
	Refusal  mqttwire.Refusal // when !OK
	Result   string           // when !OK: ResultNotAuthorized or ResultAuthError
	Err      error            // why, for the access log (never holds the password)
	Identity string           // the certificate identity, when the listener takes one
	// Packet is the rewritten CONNECT, nil when it is unchanged; ClientID
	// and Username are then its new values.
	Packet             []byte
	ClientID, Username string
}

var errNoIdentity = errors.New("no verified client certificate identity")

// Admit runs the listener's identity check or rewrite, then the upstream's
// authentication service.
func (g *Gate) Admit(ctx context.Context, c *Conn) Verdict {
	if g == nil {
		return Verdict{OK: true}
	}
	v := Verdict{OK: true, ClientID: c.Connect.ClientID, Username: c.Connect.Username}
	if id := g.identities[c.Listener]; id != nil {
		v = id.apply(c)
		if !v.OK {
			return v
		}
	}
	if s := g.services[c.Upstream]; s != nil {
		pkt := c.Packet
		if v.Packet != nil {
			pkt = v.Packet
		}
		if refused := s.admit(ctx, c, &v, pkt); refused != nil {
			return *refused
		}
	}
	return v
}

func deny(result string, why mqttwire.Refusal, err error, identity string) Verdict {
	return Verdict{Refusal: why, Result: result, Err: err, Identity: identity}
}
