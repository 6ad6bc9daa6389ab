package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestCheckNodeAuthStores: mqlb check loads the node's credential stores as
// the node does at start (users files, JWT keys, connection strings; no
// store contacted), so a config the node refuses fails the check with the
// node's message and status 1, and a good one passes.
func TestCheckNodeAuthStores(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	privDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	pubFile := writeFile(t, "login.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})))
	privFile := writeFile(t, "login.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})))
	notKey := writeFile(t, "notakey.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPx example\n")
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	goodUsers := writeFile(t, "users", "dev:"+string(hash)+"\n")
	// mosquitto_passwd's format (PBKDF2-SHA512), which the node does not take.
	mosquittoUsers := writeFile(t, "users-mosquitto", "dev:$7$101$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==\n")
	nodeConfig := func(auth string) string {
		dir := t.TempDir()
		return writeFile(t, "node.yaml", fmt.Sprintf("node: { name: n1, data_dir: %q }\nlisteners: [{ name: tcp, type: tcp, address: \"127.0.0.1:0\" }]\nauth:\n%s",
			filepath.Join(dir, "data"), auth))
	}
	for _, tc := range []struct{ name, auth, want string }{
		{"jwt key not a PEM key", fmt.Sprintf("  backends: [{ type: jwt, public_key_file: %q }]\n", notKey),
			"auth.backends[0] (jwt): public_key_file: not a PEM RSA, ECDSA or Ed25519 public key"},
		{"jwt private key as the public key", fmt.Sprintf("  backends: [{ type: jwt, public_key_file: %q }]\n", privFile),
			"auth.backends[0] (jwt): public_key_file: not a PEM RSA, ECDSA or Ed25519 public key"},
		{"users file with a mosquitto hash", fmt.Sprintf("  backends: [{ type: file, users_file: %q }]\n", mosquittoUsers),
			`users file ` + mosquittoUsers + `:1: user "dev": not a bcrypt hash`},
		{"auth.users_file with a mosquitto hash", fmt.Sprintf("  users_file: %q\n", mosquittoUsers),
			`auth.users_file: users file ` + mosquittoUsers + `:1: user "dev": not a bcrypt hash`},
		{"postgres dsn", "  backends: [{ type: postgres, dsn: \"host=/tmp/x port=notaport\", query: \"SELECT h FROM u WHERE name = @username\" }]\n",
			"auth.backends[0] (postgres): dsn: cannot parse the connection string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := nodeConfig(tc.auth)
			out, errOut, code := runMQLB(t, "check", f)
			if code != 1 || strings.Contains(out, "valid node config") || !strings.Contains(errOut, tc.want) {
				t.Errorf("mqlb check: exit %d, stdout %q, stderr %q; want status 1 and %q", code, out, errOut, tc.want)
			}
			// The node refuses the same config with the same message.
			if _, errOut, code := runMQLB(t, "node", "-c", f); code == 0 || !strings.Contains(errOut, tc.want) {
				t.Errorf("mqlb node: exit %d, stderr %q; want %q", code, errOut, tc.want)
			}
		})
	}
	// Every kind of store, well configured: valid, and no server is needed
	// (nothing listens on the PostgreSQL, Redis or HTTP addresses).
	good := nodeConfig(fmt.Sprintf("  users_file: %q\n  backends:\n"+
		"    - { type: file }\n"+
		"    - { type: jwt, public_key_file: %q }\n"+
		"    - { type: postgres, dsn: \"host=127.0.0.1 port=1 dbname=mqtt user=mqlb\", query: \"SELECT h FROM u WHERE name = @username\" }\n"+
		"    - { type: redis, address: \"127.0.0.1:1\", key: \"mqtt_user:%%u\" }\n"+
		"    - { type: http, url: \"http://127.0.0.1:1/auth\", cache_ttl: 30s }\n", goodUsers, pubFile))
	if out, errOut, code := runMQLB(t, "check", good); code != 0 || !strings.Contains(out, "valid node config") || !strings.Contains(out, "auth store 4: http") {
		t.Errorf("good stores: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestCheckLBAuthSummary: the load balancer's summary lists each upstream's
// auth service (its URL without credentials) and each listener's
// certificate identity.
func TestCheckLBAuthSummary(t *testing.T) {
	ca := testutil.NewCA(t)
	srv := ca.Server("lb")
	f := writeFile(t, "mqlb.yaml", fmt.Sprintf(`listeners:
  - name: mqtts
    address: "127.0.0.1:0"
    upstream: brokers
    tls: { cert: %q, key: %q, client_ca: %q, client_auth: require, identity: { from: san_dns, require_match: username, rewrite_client_id: true } }
upstreams:
  brokers:
    servers: [{ address: "127.0.0.1:1" }]
    auth: { url: "https://svc:s3cretpw@auth.example:8443/mqtt/auth?token=t0ken", timeout: 1s, cache_ttl: 30s }
`, srv.CertFile, srv.KeyFile, ca.CAFile()))
	out, errOut, code := runMQLB(t, "check", f)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, want := range []string{
		"identity from san_dns, require_match username, rewrite_client_id",
		"auth http https://auth.example:8443/mqtt/auth (user info and query hidden), timeout 1s, cache_ttl 30s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"s3cretpw", "t0ken"} {
		if strings.Contains(out+errOut, secret) {
			t.Errorf("output shows %q:\n%s%s", secret, out, errOut)
		}
	}
}
