package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mqlb/mqlb/internal/config"
)

// jwtBackend takes the password as a JSON Web Token signed with an HMAC
// secret or verified with a public key. Its username claim must equal the
// CONNECT user name; its acl claim (optional) lists the client's rules.
// A password that is not a JWT (malformed) is ignored; a JWT that does not
// verify (signature, algorithm, exp, nbf, aud and iss when configured, a
// "crit" header) or names another user is denied; a verified JWT with a
// malformed acl claim is an error.
type jwtBackend struct {
	key       any
	userClaim string
	aclClaim  string
	opts      []jwt.ParserOption
}

func newJWTBackend(c config.AuthBackend) (*jwtBackend, error) {
	b := &jwtBackend{userClaim: c.UsernameClaim, aclClaim: c.ACLClaim}
	var methods []string
	switch {
	case c.Secret != "":
		b.key, methods = []byte(c.Secret), []string{"HS256", "HS384", "HS512"}
	case c.SecretFile != "":
		s, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return nil, err
		}
		b.key, methods = []byte(strings.TrimSpace(string(s))), []string{"HS256", "HS384", "HS512"}
	default:
		pem, err := os.ReadFile(c.PublicKeyFile)
		if err != nil {
			return nil, err
		}
		if b.key, methods, err = publicKey(pem); err != nil {
			return nil, fmt.Errorf("public_key_file: %w", err)
		}
	}
	// An empty HMAC key verifies any token signed with an empty key, and a
	// short one is guessable: RFC 7518 §3.2 asks for one at least as long
	// as the hash's output.
	if k, ok := b.key.([]byte); ok && len(k) < minHMACKey {
		return nil, fmt.Errorf("HMAC secret of %d bytes: use at least %d (RFC 7518 section 3.2)", len(k), minHMACKey)
	}
	b.opts = []jwt.ParserOption{jwt.WithValidMethods(methods)}
	// Configured, the claim is required: golang-jwt refuses a token
	// without it.
	if c.Audience != "" {
		b.opts = append(b.opts, jwt.WithAudience(c.Audience))
	}
	if c.Issuer != "" {
		b.opts = append(b.opts, jwt.WithIssuer(c.Issuer))
	}
	return b, nil
}

// minHMACKey is the shortest HMAC secret taken: HS256's output size.
const minHMACKey = 32

// publicKey parses a PEM public key and the algorithms it verifies.
func publicKey(pem []byte) (any, []string, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(pem); err == nil {
		return k, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(pem); err == nil {
		return k, []string{"ES256", "ES384", "ES512"}, nil
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(pem); err == nil {
		return k, []string{"EdDSA"}, nil
	}
	return nil, nil, errors.New("not a PEM RSA, ECDSA or Ed25519 public key")
}

func (b *jwtBackend) Authenticate(_ context.Context, r Request) (Decision, error) {
	if !looksLikeJWT(r.Password) {
		// a password such as v1.2.3: the next store is asked
		return Decision{Result: Ignore}, nil
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(r.Password, claims, keyFor(b.key), b.opts...)
	if err != nil {
		return Decision{Result: Deny}, nil
	}
	if u, _ := claims[b.userClaim].(string); u == "" || u != r.Username {
		return Decision{Result: Deny}, nil
	}
	// A verified token with a malformed ACL is a bad answer from the store,
	// as for http, redis and postgres: an error (server unavailable).
	var es []aclEntry
	if raw, ok := claims[b.aclClaim]; ok {
		j, _ := json.Marshal(raw)
		if err := json.Unmarshal(j, &es); err != nil {
			return Decision{}, fmt.Errorf("%s claim: %w", b.aclClaim, err)
		}
	}
	rules, err := toRules(es)
	if err != nil {
		return Decision{}, fmt.Errorf("%s claim: %w", b.aclClaim, err)
	}
	return Decision{Result: Allow, ACL: rules}, nil
}

// keyFor is the key function: it refuses a token with a "crit" header,
// which lists extensions the verifier must understand or reject the token
// (RFC 7515 section 4.1.11); this one understands none. golang-jwt ignores
// the header: such a token was accepted.
func keyFor(key any) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			return nil, errors.New(`"crit" header: no JWS extension is understood`)
		}
		return key, nil
	}
}

// looksLikeJWT reports whether p is three dot-separated parts whose first is
// base64url JSON naming an "alg": a token, valid or not. A token whose
// claims or signature are damaged is still one, and denied; anything else
// is a password for the next store.
func looksLikeJWT(p string) bool {
	head, rest, ok := strings.Cut(p, ".")
	if !ok || strings.Count(rest, ".") != 1 {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(head, "="))
	if err != nil {
		return false
	}
	var h struct {
		Alg *string `json:"alg"`
	}
	return json.Unmarshal(raw, &h) == nil && h.Alg != nil
}
