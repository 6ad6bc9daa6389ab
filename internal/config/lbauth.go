package config

import (
	"fmt"
	"net/url"
)

// Identity takes the MQTT identity from a listener's verified client
// certificate (load balancer listeners only).
type Identity struct {
	From            string `yaml:"from"`              // cn | san_dns | san_uri
	RequireMatch    string `yaml:"require_match"`     // client_id | username | none
	RewriteUsername bool   `yaml:"rewrite_username"`  // CONNECT user name := identity
	RewriteClientID bool   `yaml:"rewrite_client_id"` // CONNECT client id := identity
}

// UpstreamAuth asks an HTTP service whether a client may connect before any
// server of the upstream is dialled.
type UpstreamAuth struct {
	Type          string   `yaml:"type"` // http
	URL           string   `yaml:"url"`
	Timeout       Duration `yaml:"timeout"`        // per request; over it the client is refused (server unavailable)
	CacheTTL      Duration `yaml:"cache_ttl"`      // how long a decision is reused; 0 = no cache
	CacheSize     int      `yaml:"cache_size"`     // decisions kept at most
	MaxConcurrent int      `yaml:"max_concurrent"` // requests in flight at most
}

func (t *TLS) setIdentityDefaults() {
	if id := t.Identity; id != nil {
		id.From = defaultString(id.From, "cn")
		id.RequireMatch = defaultString(id.RequireMatch, "client_id")
	}
}

func (a *UpstreamAuth) setDefaults() {
	if a == nil {
		return
	}
	a.Type = defaultString(a.Type, "http")
	defaultDuration(&a.Timeout, 2e9)
	if a.CacheSize == 0 {
		a.CacheSize = 100_000
	}
	if a.MaxConcurrent == 0 {
		a.MaxConcurrent = 64
	}
}

func (ck *check) identity(p string, t *TLS) {
	id := t.Identity
	if id == nil {
		return
	}
	ck.oneOf(p+".from", id.From, "cn", "san_dns", "san_uri")
	ck.oneOf(p+".require_match", id.RequireMatch, "client_id", "username", "none")
	if t.ClientAuth == "none" {
		ck.errorf(p, "needs client certificates: set client_auth to require (or request) and client_ca")
	}
	if id.RequireMatch == "client_id" && id.RewriteClientID || id.RequireMatch == "username" && id.RewriteUsername {
		ck.errorf(p+".require_match", "%s must match the identity and is also rewritten to it; keep one", id.RequireMatch)
	}
}

func (ck *check) upstreamAuth(p string, a *UpstreamAuth) {
	if a == nil {
		return
	}
	ck.oneOf(p+".type", a.Type, "http")
	if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ck.errorf(p+".url", "want an http:// or https:// URL, got %q", a.URL)
	}
	ck.positive(p+".timeout", a.Timeout)
	if a.CacheSize < 1 {
		ck.errorf(p+".cache_size", "must be 1 or more")
	}
	if a.MaxConcurrent < 1 {
		ck.errorf(p+".max_concurrent", "must be 1 or more")
	}
}

// Summary describes the identity for mqlb check.
func (id *Identity) Summary() string {
	s := "identity from " + id.From + ", require_match " + id.RequireMatch
	if id.RewriteUsername {
		s += ", rewrite_username"
	}
	if id.RewriteClientID {
		s += ", rewrite_client_id"
	}
	return s
}

// Summary describes the auth service for mqlb check; the URL's user
// information and query (which may hold credentials) are left out.
func (a *UpstreamAuth) Summary() string {
	u := a.URL
	if p, err := url.Parse(a.URL); err == nil {
		hidden := p.User != nil || p.RawQuery != ""
		p.User, p.RawQuery, p.ForceQuery = nil, "", false
		u = p.String()
		if hidden {
			u += " (user info and query hidden)"
		}
	} else {
		u = hideUserinfo(u)
	}
	cache := "off"
	if a.CacheTTL > 0 {
		cache = fmt.Sprintf("%s (at most %d)", a.CacheTTL, a.CacheSize)
	}
	return fmt.Sprintf("auth %s %s, timeout %s, cache_ttl %s, max_concurrent %d", a.Type, u, a.Timeout, cache, a.MaxConcurrent)
}
