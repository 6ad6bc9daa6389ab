package config

import (
	"strings"
	"testing"
)

func TestAuthConfigDefaultsAndErrors(t *testing.T) {
	c, err := Parse([]byte(minimal + "    auth: { url: \"http://127.0.0.1:8080/auth\" }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Upstreams["brokers"].Auth; a.Type != "http" || a.Timeout.D().Seconds() != 2 || a.MaxConcurrent != 64 || a.CacheSize != 100000 || a.CacheTTL != 0 {
		t.Errorf("auth defaults: %+v", a)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"auth url", minimal + "    auth: { url: \"ftp://x\" }\n",
			`upstreams.brokers.auth.url (line 11): want an http:// or https:// URL, got "ftp://x"`},
		{"auth type", minimal + "    auth: { type: ldap, url: \"http://x\" }\n",
			`upstreams.brokers.auth.type (line 11): unknown value "ldap"; want one of http`},
		{"identity without client certificates",
			strings.Replace(minimal, "upstream: brokers", "upstream: brokers\n    tls: { cert: x.pem, key: x.key, identity: { from: cn } }", 1),
			`listeners[0].tls.identity (line 6): needs client certificates`},
		{"identity from",
			strings.Replace(minimal, "upstream: brokers", "upstream: brokers\n    tls: { cert: x.pem, key: x.key, identity: { from: email } }", 1),
			`listeners[0].tls.identity.from (line 6): unknown value "email"; want one of cn, san_dns, san_uri`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNodeAuthBackendErrors(t *testing.T) {
	base := "node: { name: n1 }\nlisteners: [ { name: tcp, address: \"127.0.0.1:0\" } ]\nauth:\n  backends:\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"type", "    - { type: ldap }\n", `auth.backends[0].type (line 5): unknown value "ldap"; want one of file, http, postgres, redis, jwt`},
		{"postgres query", "    - { type: postgres, dsn: \"host=/tmp\", query: \"SELECT 1\" }\n", `auth.backends[0].query (line 5): want a query using @username or @client_id`},
		{"redis key", "    - { type: redis, address: \"/tmp/r.sock\", key: fixed }\n", `auth.backends[0].key (line 5): want a key pattern using %u or %c`},
		{"jwt keys", "    - { type: jwt, secret: a, public_key_file: /etc/passwd }\n", `auth.backends[0] (line 5): want exactly one of secret, secret_file or public_key_file`},
		{"file", "    - { type: file }\n", `auth.backends[0].users_file`},
		{"audience on http", "    - { type: http, url: \"http://127.0.0.1/a\", audience: mqtt }\n", `auth.backends[0].audience (line 5): applies to type jwt only`},
		{"issuer on redis", "    - { type: redis, address: \"/tmp/r.sock\", key: \"u:%u\", issuer: me }\n", `auth.backends[0].issuer (line 5): applies to type jwt only`},
		{"audience spaces", "    - { type: jwt, secret: s, audience: \" mqtt\" }\n", `auth.backends[0].audience (line 5): " mqtt" has surrounding spaces`},
		{"issuer control", "    - { type: jwt, secret: s, issuer: \"a\\tb\" }\n", `auth.backends[0].issuer (line 5): "a\tb" has surrounding spaces or a control character`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNode([]byte(base + tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
	n, err := ParseNode([]byte(base + "    - { type: jwt, secret: s }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := n.Auth.Backends[0]; b.Timeout.D().Seconds() != 2 || b.UsernameClaim != "username" || b.ACLClaim != "acl" {
		t.Errorf("jwt defaults: %+v", b)
	}
	n, err = ParseNode([]byte(base + "    - { type: jwt, secret: s, audience: mqtt-nodes, issuer: \"https://login.example\" }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := n.Auth.Backends[0]; b.Audience != "mqtt-nodes" || b.Issuer != "https://login.example" {
		t.Errorf("jwt audience and issuer: %+v", b)
	}
	if s := n.Summary(); !strings.Contains(s, `auth store 0: jwt (timeout 2s, cache 0s, audience "mqtt-nodes", issuer "https://login.example")`) {
		t.Errorf("summary does not show the jwt store's audience and issuer:\n%s", s)
	}
}
