package config

import (
	"os"
	"strings"
	"testing"
)

// TestSyntaxErrorLine: YAML syntax errors name the line of the problem, not
// the line (0-based) where the enclosing structure began.
func TestSyntaxErrorLine(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"listeners:\n  - address: \"127.0.0.1:1883\"\n    upstream: brokers\n   bogus: 1\nupstreams: {}\n", "line 4: yaml: did not find expected '-' indicator"},
		{"listeners:\n  - { address: \"127.0.0.1:1883\", upstream: brokers\nupstreams:\n  brokers: {}\n", "line 2: yaml: did not find expected ',' or '}'"},
		{"listeners:\n  - name: \"abc\n    upstream: b\n", "line 2: yaml: found unexpected end of stream"},
		{"upstreams:\n  b:\n\tbad: 1\n", "line 3: yaml: found character that cannot start any token"},
	} {
		_, err := Parse([]byte(tc.doc))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q:\n got %v\nwant %s", tc.doc, err, tc.want)
		}
	}
}

// TestEveryErrorInOnePass: decoding errors and validation errors come
// together, without a second complaint about a key that did not decode.
func TestEveryErrorInOnePass(t *testing.T) {
	doc := "listeners:\n  - { address: \"127.0.0.1:1883\", upstream: brokers, nam: x }\nupstreams:\n  brokers:\n    balance: clientid\n" +
		"    servers: [{ address: \"127.0.0.1:1\", weight: x }]\nlimits: { max_connect_packet: 2 }\n"
	_, err := Parse([]byte(doc))
	if err == nil {
		t.Fatal("no error")
	}
	got := flatten(err)
	want := []string{
		"listeners[0].nam (line 2): unknown key",
		`upstreams.brokers.servers[0].weight (line 6): want a whole number, got "x"`,
		`upstreams.brokers.balance (line 5): unknown policy "clientid"`,
		"limits.max_connect_packet (line 7): want a size from 16",
	}
	if len(got) != len(want) {
		t.Fatalf("%d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i].Error(), w) {
			t.Errorf("error %d = %v, want %s…", i, got[i], w)
		}
	}
}

func TestAdminTokenFile(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/token"
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "listeners: [{ address: \"127.0.0.1:0\", upstream: u }]\nupstreams: { u: { servers: [{ address: \"127.0.0.1:1\" }] } }\n"
	c, err := Parse([]byte(base + "admin: { address: \"0.0.0.0:9090\", token_file: " + file + " }\n"))
	if err != nil || c.Admin.Token != "s3cret" {
		t.Fatalf("token_file: %v %q", err, c.Admin.Token)
	}
	if err := c.Validate(); err != nil { // node.New validates again
		t.Errorf("validated twice: %v", err)
	}
	if _, err := Parse([]byte(base + "admin: { token: x, token_file: " + file + " }\n")); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("token and token_file: %v", err)
	}
	if _, err := Parse([]byte(base + "admin: { token_file: " + dir + "/missing }\n")); err == nil || !strings.Contains(err.Error(), "admin.token_file (line 3)") {
		t.Errorf("missing file: %v", err)
	}
}
