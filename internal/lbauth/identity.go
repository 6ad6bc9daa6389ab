package lbauth

import (
	"crypto/tls"
	"fmt"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
)

// identity is a listener's tls.identity.
type identity struct {
	from                   string // cn | san_dns | san_uri
	match                  string // client_id | username | none
	rewriteUser, rewriteID bool
}

func newIdentity(c *config.Identity) *identity {
	return &identity{from: c.From, match: c.RequireMatch, rewriteUser: c.RewriteUsername, rewriteID: c.RewriteClientID}
}

// of returns the identity in the verified leaf certificate: its subject CN,
// or its first DNS or URI subject alternative name. An unverified
// certificate is no identity (the config check makes client_auth verify,
// but this does not rely on it).
func (id *identity) of(st *tls.ConnectionState) string {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return ""
	}
	leaf := st.VerifiedChains[0][0]
	switch id.from {
	case "san_dns":
		if len(leaf.DNSNames) > 0 {
			return leaf.DNSNames[0]
		}
	case "san_uri":
		if len(leaf.URIs) > 0 {
			return leaf.URIs[0].String()
		}
	default:
		return leaf.Subject.CommonName
	}
	return ""
}

// apply checks the CONNECT against the identity and rewrites it when asked.
// A listener with an identity policy refuses a client without one.
func (id *identity) apply(c *Conn) Verdict {
	name := id.of(c.TLS)
	if name == "" {
		return deny(ResultNotAuthorized, mqttwire.RefuseNotAuthorized, errNoIdentity, "")
	}
	cn := c.Connect
	switch {
	case id.match == "client_id" && cn.ClientID != name:
		return deny(ResultNotAuthorized, mqttwire.RefuseNotAuthorized,
			fmt.Errorf("client id %q is not the certificate identity %q", cn.ClientID, name), name)
	case id.match == "username" && (!cn.HasUsername || cn.Username != name):
		return deny(ResultNotAuthorized, mqttwire.RefuseNotAuthorized,
			fmt.Errorf("user name %q is not the certificate identity %q", cn.Username, name), name)
	}
	v := Verdict{OK: true, Identity: name, ClientID: cn.ClientID, Username: cn.Username}
	if !id.rewriteUser && !id.rewriteID {
		return v
	}
	return id.rewrite(c, v, name)
}

// rewrite writes the identity name into the client's CONNECT, as its client
// id or user name or both, refusing the client with the code for that field
// when the broker would refuse the result.
func (id *identity) rewrite(c *Conn, v Verdict, name string) Verdict {
	field := mqttwire.RefuseUsername
	if id.rewriteID {
		field = mqttwire.RefuseIdentifier
	}
	if !mqttwire.AllowedString(name) { // as ParseConnect refuses from clients (mqttwire.ErrDisallowedChar)
		return deny(ResultNotAuthorized, field,
			fmt.Errorf("certificate identity %q holds a control character or non-character", name), name)
	}
	var idp, userp *string
	if id.rewriteID {
		if c.Connect.Version == mqttwire.V31 && len(name) > 23 {
			// MQTT 3.1 allows 1 to 23 characters: the broker would refuse it.
			return deny(ResultNotAuthorized, mqttwire.RefuseIdentifier,
				fmt.Errorf("certificate identity %q is longer than MQTT 3.1's 23 characters for a client id", name), name)
		}
		idp, v.ClientID = &name, name
	}
	if id.rewriteUser {
		userp, v.Username = &name, name
	}
	pkt, err := mqttwire.RewriteConnect(nil, c.Packet, idp, userp)
	if err != nil {
		return deny(ResultNotAuthorized, mqttwire.RefuseNotAuthorized, fmt.Errorf("rewrite CONNECT: %w", err), name)
	}
	v.Packet = pkt
	return v
}
