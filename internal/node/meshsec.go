package node

import (
	"crypto/tls"
	"log/slog"
	"net/url"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/config"
)

// routeUser is the user name every route presents with mesh.token as its
// password: one cluster secret, not per-node credentials.
const routeUser = "mqlb"

// routeTLSTimeout is the TLS handshake timeout of a route, in seconds.
const routeTLSTimeout = 5

// secureRoutes makes the embedded server's routes authenticated (mesh.token:
// a route that does not present it is closed with "Authorization
// Violation", and NATS logs the refusal) and encrypted (mesh.tls: both ends
// present a certificate of the cluster's CA). Routes NATS learns by gossip
// get the same credentials.
func secureRoutes(m config.Mesh, opts *server.Options, log *slog.Logger) error {
	if m.Token != "" {
		opts.Cluster.Username, opts.Cluster.Password = routeUser, m.Token
		for _, r := range opts.Routes {
			if r.User == nil {
				r.User = url.UserPassword(routeUser, m.Token)
			}
		}
	}
	if m.TLS != nil {
		tc, err := m.TLS.Config()
		if err != nil {
			return err
		}
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc, routeTLSTimeout
	}
	if m.Token == "" && m.TLS == nil {
		log.Warn("mesh routes are open: anyone who reaches mesh.listen joins the cluster and sees every message; set mesh.token (and mesh.tls)",
			"listen", m.Listen)
	}
	return nil
}

// externalOptions are the credentials of the node's connections to an
// external NATS (mesh.url): mesh.token as the NATS token, mesh.tls as the
// client certificate and CA.
func externalOptions(m config.Mesh) ([]nats.Option, error) {
	var opts []nats.Option
	if m.Token != "" {
		opts = append(opts, nats.Token(m.Token))
	}
	if m.TLS != nil {
		tc, err := m.TLS.Config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(&tls.Config{Certificates: tc.Certificates, RootCAs: tc.RootCAs, MinVersion: tc.MinVersion}))
	}
	return opts, nil
}

// routeRefusal recognises NATS' log line for a route it refused
// ("127.0.0.1:37050 - rid:15 - authentication error", or a failed TLS
// handshake) and returns the peer's address and why.
func routeRefusal(msg string) (remote, reason string, ok bool) {
	remote, rest, found := strings.Cut(msg, " - rid:")
	if !found {
		return "", "", false
	}
	switch {
	case strings.Contains(rest, "authentication error"), strings.Contains(rest, "Authorization Violation"):
		return remote, "wrong or missing mesh.token", true
	case strings.Contains(rest, "TLS") && strings.Contains(rest, "handshake"):
		return remote, "TLS handshake failed (mesh.tls)", true
	}
	return "", "", false
}
