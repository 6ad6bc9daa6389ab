package config

import (
	"fmt"
	"net/url"
	"strings"
	"unicode"
)

// AuthBackend is one node credential store (auth.backends[]). Which keys
// apply depends on the type; see examples/node.yaml.
type AuthBackend struct {
	Type     string   `yaml:"type"`      // file | http | postgres | redis | jwt
	Timeout  Duration `yaml:"timeout"`   // per lookup; over it the client is refused (server unavailable)
	CacheTTL Duration `yaml:"cache_ttl"` // how long a decision is reused; 0 = no cache

	UsersFile string `yaml:"users_file"` // file: default auth.users_file
	URL       string `yaml:"url"`        // http

	DSN      string `yaml:"dsn"`       // postgres: e.g. "host=/run/postgresql dbname=mqtt"
	Query    string `yaml:"query"`     // postgres: returns the bcrypt hash; @username and @client_id
	ACLQuery string `yaml:"acl_query"` // postgres: returns rows (allow, access, topic)

	Address  string `yaml:"address"`  // redis: host:port or a unix socket path
	Password string `yaml:"password"` // redis AUTH
	DB       int    `yaml:"db"`       // redis database
	Key      string `yaml:"key"`      // redis: key pattern with %u / %c, a hash with password_hash and acl

	Secret        string `yaml:"secret"`          // jwt: HMAC secret
	SecretFile    string `yaml:"secret_file"`     // jwt: HMAC secret in a file
	PublicKeyFile string `yaml:"public_key_file"` // jwt: PEM RSA, ECDSA or Ed25519 public key
	UsernameClaim string `yaml:"username_claim"`  // jwt: default "username"
	ACLClaim      string `yaml:"acl_claim"`       // jwt: default "acl"
	Audience      string `yaml:"audience"`        // jwt: when set, the aud claim must hold it
	Issuer        string `yaml:"issuer"`          // jwt: when set, the iss claim must be it
}

// AuthBackendTypes are the node credential store types.
var AuthBackendTypes = []string{"file", "http", "postgres", "redis", "jwt"}

func (b *AuthBackend) setDefaults() {
	defaultDuration(&b.Timeout, 2e9)
	if b.Type == "jwt" {
		b.UsernameClaim = defaultString(b.UsernameClaim, "username")
		b.ACLClaim = defaultString(b.ACLClaim, "acl")
	}
}

func (ck *check) authBackends(a *NodeAuth) {
	for i := range a.Backends {
		b := &a.Backends[i]
		p := fmt.Sprintf("auth.backends[%d]", i)
		ck.oneOf(p+".type", b.Type, AuthBackendTypes...)
		ck.positive(p+".timeout", b.Timeout)
		for _, k := range []struct{ key, v string }{{"audience", b.Audience}, {"issuer", b.Issuer}} {
			switch {
			case k.v != "" && b.Type != "jwt":
				ck.errorf(p+"."+k.key, "applies to type jwt only")
			case k.v != strings.TrimSpace(k.v) || (k.v != "" && strings.IndexFunc(k.v, unicode.IsControl) >= 0):
				ck.errorf(p+"."+k.key, "%q has surrounding spaces or a control character; a token's claim would never match", k.v)
			}
		}
		switch b.Type {
		case "file":
			if b.UsersFile == "" && a.UsersFile == "" {
				ck.errorf(p+".users_file", "a users file is required (here or in auth.users_file)")
			} else if b.UsersFile != "" {
				ck.readable(p+".users_file", b.UsersFile)
			}
		case "http":
			if u, err := url.Parse(b.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				ck.errorf(p+".url", "want an http:// or https:// URL, got %q", b.URL)
			}
		case "postgres":
			if b.DSN == "" {
				ck.errorf(p+".dsn", "a PostgreSQL connection string is required")
			}
			if !strings.Contains(b.Query, "@username") && !strings.Contains(b.Query, "@client_id") {
				ck.errorf(p+".query", "want a query using @username or @client_id that returns the password hash")
			}
		case "redis":
			if b.Address == "" {
				ck.errorf(p+".address", "a Redis address (host:port or a unix socket path) is required")
			}
			if !strings.Contains(b.Key, "%u") && !strings.Contains(b.Key, "%c") {
				ck.errorf(p+".key", "want a key pattern using %%u or %%c, such as mqtt_user:%%u, got %q", b.Key)
			}
		case "jwt":
			n := 0
			for _, s := range []string{b.Secret, b.SecretFile, b.PublicKeyFile} {
				if s != "" {
					n++
				}
			}
			if n != 1 {
				ck.errorf(p, "want exactly one of secret, secret_file or public_key_file")
			}
			if b.SecretFile != "" {
				ck.readable(p+".secret_file", b.SecretFile)
			}
			if b.PublicKeyFile != "" {
				ck.readable(p+".public_key_file", b.PublicKeyFile)
			}
		}
	}
}
