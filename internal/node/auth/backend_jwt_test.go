package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mqlb/mqlb/internal/config"
)

func TestJWTBackendPublicKey(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pemFile := filepath.Join(t.TempDir(), "login.pub")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := os.WriteFile(pemFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := newJWTBackend(config.AuthBackend{Type: "jwt", PublicKeyFile: pemFile, UsernameClaim: "sub", ACLClaim: "acl"})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	good := sign(jwt.SigningMethodEdDSA, priv, jwt.MapClaims{"sub": "dev", "exp": exp,
		"acl": []map[string]any{{"allow": true, "access": "subscribe", "topic": "cmd/%c"}}})
	for _, tc := range []struct {
		name, user, token string
		want              Result
		wantErr           bool
	}{
		{"valid", "dev", good, Allow, false},
		{"other user", "dev2", good, Deny, false},
		{"expired", "dev", sign(jwt.SigningMethodEdDSA, priv, jwt.MapClaims{"sub": "dev", "exp": time.Now().Add(-time.Minute).Unix()}), Deny, false},
		// An HMAC token keyed with the public key's bytes: algorithm confusion.
		{"hmac with the public key", "dev", sign(jwt.SigningMethodHS256, pemBytes, jwt.MapClaims{"sub": "dev", "exp": exp}), Deny, false},
		{"unknown alg", "dev", withHeader(t, good, `{"alg":"XX99","typ":"JWT"}`), Deny, false},
		{"bad signature", "dev", good[:len(good)-4] + "AAAA", Deny, false},
		// A verified token with a malformed ACL is an error (0x88), as a
		// malformed ACL from http, redis or postgres is.
		{"bad acl", "dev", sign(jwt.SigningMethodEdDSA, priv, jwt.MapClaims{"sub": "dev", "acl": []map[string]any{{"access": "x", "topic": "a"}}}), Ignore, true},
		{"acl not a list", "dev", sign(jwt.SigningMethodEdDSA, priv, jwt.MapClaims{"sub": "dev", "acl": "all"}), Ignore, true},
		{"not a token", "dev", "hunter2", Ignore, false},
		{"two dots, not a token", "dev", "v1.2.3", Ignore, false},
		// A token with damaged claims or signature is still a token: denied,
		// not passed on as a password.
		{"json header, claims not base64", "dev", withHeader(t, "x.!!.y", `{"alg":"EdDSA"}`), Deny, false},
		{"signature not base64", "dev", good + "-wrong", Deny, false},
	} {
		d, err := b.Authenticate(context.Background(), Request{Username: tc.user, Password: tc.token})
		if (err != nil) != tc.wantErr || d.Result != tc.want {
			t.Errorf("%s: %v %v, want %v (error %v)", tc.name, d.Result, err, tc.want, tc.wantErr)
		}
		if tc.name == "valid" && (len(d.ACL) != 1 || d.ACL[0].Topic != "cmd/%c" || d.ACL[0].Access != AccessSubscribe) {
			t.Errorf("acl: %+v", d.ACL)
		}
	}
}

// withHeader replaces a token's header with a base64url-encoded JSON one.
func withHeader(t *testing.T, token, header string) string {
	t.Helper()
	parts := strings.SplitN(token, ".", 2)
	if len(parts) != 2 {
		t.Fatalf("token %q", token)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + parts[1]
}

// TestJWTThenUsersFile: a jwt store before a users file, through a real
// broker. A users-file password with two dots (v1.2.3) is not a JWT: the
// jwt store does not know it and the file lets the user in. A token with a
// bad signature is refused (0x86) without asking the file; a correctly
// signed token with a malformed acl claim is a bad answer: 0x88.
func TestJWTThenUsersFile(t *testing.T) {
	secret := "s3cret-for-tests-at-least-32-bytes"
	h := mustNew(t, Options{ACLDefault: true, Backends: []config.AuthBackend{
		{Type: "jwt", Secret: secret, UsernameClaim: "username", ACLClaim: "acl", Timeout: config.Duration(time.Second)},
		{Type: "file", UsersFile: usersFile(t, hashLine(t, "dotted", "v1.2.3"), hashLine(t, "forged", "x")), Timeout: config.Duration(time.Second)},
	}})
	_, addrs := startBroker(t, h)
	sign := func(key string, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name, user, pw string
		want           byte
	}{
		{"users-file password v1.2.3", "dotted", "v1.2.3", 0},
		{"token signed with another key", "forged", sign("other", jwt.MapClaims{"username": "forged"}), 0x86},
		{"token with a malformed acl", "dev", sign(secret, jwt.MapClaims{"username": "dev", "acl": []map[string]any{{"allow": true, "access": "zz", "topic": "a"}}}), 0x88},
		{"valid token", "dev", sign(secret, jwt.MapClaims{"username": "dev"}), 0},
	} {
		_, ack, err := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "c-" + tc.user, Username: tc.user, Password: []byte(tc.pw)})
		if ack == nil {
			t.Errorf("%s: no CONNACK: %v", tc.name, err)
		} else if ack.ReasonCode != tc.want {
			t.Errorf("%s: CONNACK 0x%02x, want 0x%02x", tc.name, ack.ReasonCode, tc.want)
		}
	}
}

// TestWrapAndCache: Options.Wrap sees every attempt, cached or not (a
// throttle must count them all).
func TestWrapAndCache(t *testing.T) {
	users := usersFile(t, hashLine(t, "u", "p"))
	var asked int
	h := mustNew(t, Options{Backends: []config.AuthBackend{{Type: "file", UsersFile: users, Timeout: config.Duration(time.Second), CacheTTL: config.Duration(time.Minute)}},
		Wrap: func(b Backend) Backend {
			return backendFunc(func(ctx context.Context, r Request) (Decision, error) { asked++; return b.Authenticate(ctx, r) })
		}})
	st := h.state.Load()
	for range 3 {
		d, _, err := chain(st.backends, Request{Username: "u", Password: "p"})
		if err != nil || d.Result != Allow {
			t.Fatalf("%v %v", d, err)
		}
	}
	if asked != 3 {
		t.Fatalf("wrapper asked %d times, want 3", asked)
	}
}

type backendFunc func(context.Context, Request) (Decision, error)

func (f backendFunc) Authenticate(ctx context.Context, r Request) (Decision, error) { return f(ctx, r) }

// TestCachedStore: a cached store answers the same request from the cache
// and asks again for another password; errors are not cached.
func TestCachedStore(t *testing.T) {
	var asked int
	fail := false
	inner := backendFunc(func(_ context.Context, r Request) (Decision, error) {
		asked++
		if fail {
			return Decision{}, context.DeadlineExceeded
		}
		return Decision{Result: Allow}, nil
	})
	c := newCached(inner, time.Minute, 10)
	for range 3 {
		c.Authenticate(context.Background(), Request{Username: "u", Password: "p"})
	}
	c.Authenticate(context.Background(), Request{Username: "u", Password: "q"})
	if asked != 2 {
		t.Fatalf("asked %d times, want 2", asked)
	}
	fail = true
	for range 2 {
		if _, err := c.Authenticate(context.Background(), Request{Username: "u", Password: "r"}); err == nil {
			t.Fatal("error hidden")
		}
	}
	if asked != 4 {
		t.Fatalf("asked %d times, want 4 (errors are not cached)", asked)
	}
	for i := range 50 {
		fail = false
		c.Authenticate(context.Background(), Request{Username: "u", Password: string(rune('a' + i))})
	}
	if len(c.m) > 10 {
		t.Fatalf("cache holds %d, bound 10", len(c.m))
	}
}

// TestJWTSecretLength: an empty secret (an empty or blank secret_file) would
// verify any token signed with an empty key; a short one is guessable. Both
// are refused at start, as RFC 7518 section 3.2 asks.
func TestJWTSecretLength(t *testing.T) {
	blank := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(blank, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []config.AuthBackend{{Type: "jwt", SecretFile: blank, UsernameClaim: "username"}, {Type: "jwt", Secret: "short", UsernameClaim: "username"}} {
		b, err := newJWTBackend(c)
		if err == nil || !strings.Contains(err.Error(), "use at least 32") {
			t.Errorf("%+v: %v, want a refusal", c, err)
		}
		if b != nil {
			forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"username": "admin"}).SignedString([]byte{})
			d, _ := b.Authenticate(context.Background(), Request{Username: "admin", Password: forged})
			if d.Result == Allow {
				t.Errorf("%+v: a token signed with an empty key is allowed", c)
			}
		}
	}
	if _, err := newJWTBackend(config.AuthBackend{Type: "jwt", Secret: strings.Repeat("k", 32)}); err != nil {
		t.Fatal(err)
	}
}

// TestJWTCritHeader: a correctly signed token whose header has "crit"
// (extensions the verifier must understand, RFC 7515 section 4.1.11; this
// one understands none) is denied.
func TestJWTCritHeader(t *testing.T) {
	secret := "s3cret-for-tests-at-least-32-bytes"
	b, err := newJWTBackend(config.AuthBackend{Type: "jwt", Secret: secret, UsernameClaim: "username", ACLClaim: "acl"})
	if err != nil {
		t.Fatal(err)
	}
	for name, crit := range map[string]any{"none": nil, "unknown extension": []string{"x-must-understand"}, "b64": []string{"b64"}, "empty list": []string{}} {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"username": "dev", "exp": time.Now().Add(time.Hour).Unix()})
		want := Allow
		if crit != nil {
			tok.Header["crit"], tok.Header["x-must-understand"], tok.Header["b64"] = crit, true, true
			want = Deny
		}
		s, err := tok.SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		if d, err := b.Authenticate(context.Background(), Request{Username: "dev", Password: s}); err != nil || d.Result != want {
			t.Errorf("crit %s: %v %v, want %v", name, d.Result, err, want)
		}
	}
}

// TestJWTAudienceIssuer: with audience and issuer set, a token is allowed
// only when its aud holds the audience and its iss is the issuer; a token
// without either is denied. Unset, neither claim is looked at.
func TestJWTAudienceIssuer(t *testing.T) {
	secret := "s3cret-for-tests-at-least-32-bytes"
	strict, err := newJWTBackend(config.AuthBackend{Type: "jwt", Secret: secret, UsernameClaim: "username", ACLClaim: "acl",
		Audience: "mqtt-nodes", Issuer: "https://login.example"})
	if err != nil {
		t.Fatal(err)
	}
	lax, err := newJWTBackend(config.AuthBackend{Type: "jwt", Secret: secret, UsernameClaim: "username", ACLClaim: "acl"})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(claims jwt.MapClaims) string {
		claims["username"] = "dev"
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name        string
		claims      jwt.MapClaims
		strict, lax Result
	}{
		{"matching", jwt.MapClaims{"aud": "mqtt-nodes", "iss": "https://login.example"}, Allow, Allow},
		{"aud list holding it", jwt.MapClaims{"aud": []string{"billing", "mqtt-nodes"}, "iss": "https://login.example"}, Allow, Allow},
		{"other aud", jwt.MapClaims{"aud": "billing", "iss": "https://login.example"}, Deny, Allow},
		{"aud list without it", jwt.MapClaims{"aud": []string{"billing"}, "iss": "https://login.example"}, Deny, Allow},
		{"no aud", jwt.MapClaims{"iss": "https://login.example"}, Deny, Allow},
		{"other iss", jwt.MapClaims{"aud": "mqtt-nodes", "iss": "https://evil.example"}, Deny, Allow},
		{"no iss", jwt.MapClaims{"aud": "mqtt-nodes"}, Deny, Allow},
		{"neither", jwt.MapClaims{}, Deny, Allow},
	} {
		tok := sign(tc.claims)
		for _, c := range []struct {
			what string
			b    *jwtBackend
			want Result
		}{{"audience and issuer set", strict, tc.strict}, {"unset", lax, tc.lax}} {
			if d, err := c.b.Authenticate(context.Background(), Request{Username: "dev", Password: tok}); err != nil || d.Result != c.want {
				t.Errorf("%s, %s: %v %v, want %v", c.what, tc.name, d.Result, err, c.want)
			}
		}
	}
}
