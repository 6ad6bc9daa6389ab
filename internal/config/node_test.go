package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

const minimalNode = `
node:
  name: n1
listeners:
  - address: "127.0.0.1:0"
mesh:
  listen: "127.0.0.1:0"
  peers: ["127.0.0.1:6223"]
`

func TestParseNodeDefaults(t *testing.T) {
	n, err := ParseNode([]byte(minimalNode))
	if err != nil {
		t.Fatal(err)
	}
	if n.Node.DataDir != filepath.Join("data", "n1") {
		t.Errorf("data_dir = %q", n.Node.DataDir)
	}
	if l := n.Listeners[0]; l.Name != "listener0" || l.Type != "tcp" {
		t.Errorf("listener defaults: %+v", l)
	}
	m := n.Mesh
	if m.ClusterName != "mqlb" || m.Timeout.D() != 2*time.Second || m.Peers[0] != "nats-route://127.0.0.1:6223" {
		t.Errorf("mesh defaults: %+v", m)
	}
	if n.SharedSubscriptions.Policy != "local_first" || n.Sessions.MaxOfflineMessages != 1000 ||
		n.Sessions.MaxExpiry.D() != 24*time.Hour {
		t.Errorf("shared/sessions defaults: %+v %+v", n.SharedSubscriptions, n.Sessions)
	}
	if q := n.MQTT; q.ReceiveMaximum != 1024 || q.MaxInflight != 8192 || q.MaxQoS != 2 || q.MaxKeepAlive != 0 {
		t.Errorf("mqtt defaults: %+v", q)
	}
	if !n.Auth.AllowsAnonymous() || n.Auth.ACLDefault != "allow" {
		t.Errorf("auth defaults: %+v", n.Auth)
	}
	if n.Admin.Address != "127.0.0.1:9091" || n.Log.Level != "info" {
		t.Errorf("admin/log defaults: %+v %+v", n.Admin, n.Log)
	}
}

func TestParseNodeKeepsExplicitValues(t *testing.T) {
	n, err := ParseNode([]byte(minimalNode + "sessions: { max_offline_messages: 0 }\nmqtt: { max_qos: 0 }\nauth: { allow_anonymous: false }\nadmin: { address: \"\" }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Sessions.MaxOfflineMessages != 0 || n.MQTT.MaxQoS != 0 || n.Auth.AllowsAnonymous() || n.Admin.Address != "" {
		t.Errorf("explicit values overwritten: %+v %+v %+v %+v", n.Sessions, n.MQTT, n.Auth, n.Admin)
	}
}

func TestParseNodeTLSListenerType(t *testing.T) {
	srv := testutil.NewCA(t).Server("localhost")
	doc := strings.Replace(minimalNode, `  - address: "127.0.0.1:0"`,
		`  - { address: "127.0.0.1:0", tls: { cert: "`+srv.CertFile+`", key: "`+srv.KeyFile+`" } }`, 1)
	n, err := ParseNode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if l := n.Listeners[0]; l.Type != "tls" || l.TLS.ClientAuth != "none" || l.TLS.MinVersion != "1.2" {
		t.Errorf("tls listener defaults: %+v %+v", l, l.TLS)
	}
}

func TestParseNodeErrorsNamePathAndLine(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"no name", strings.Replace(minimalNode, "name: n1", "name: \"\"", 1),
			`node.name (line 3): a node name is required`},
		{"bad name", strings.Replace(minimalNode, "name: n1", "name: n.1", 1),
			`node.name (line 3): want 1-64 letters`},
		{"unknown key", minimalNode + "mesh2: {}\n",
			`mesh2 (line 9): unknown key; want one of admin, auth, listeners, log, mesh,`},
		{"peer url", strings.Replace(minimalNode, `"127.0.0.1:6223"`, `"http://x:1"`, 1),
			`mesh.peers[0] (line 8): want host:port or nats-route://host:port, got "http://x:1"`},
		{"peers without listen", strings.Replace(minimalNode, `  listen: "127.0.0.1:0"`+"\n", "", 1),
			`mesh.peers (line 7): peers need mesh.listen`},
		{"url and listen", minimalNode + "  url: nats://x:4222\n",
			`mesh.url (line 9): an external NATS url replaces the embedded server`},
		{"replicas", minimalNode + "  replicas: 7\n", `mesh.replicas (line 9): want 0 (automatic) to 5, got 7`},
		{"policy", minimalNode + "shared_subscriptions: { policy: sticky }\n",
			`shared_subscriptions.policy (line 9): unknown value "sticky"; want one of local_first, round_robin, random`},
		{"listener type", strings.Replace(minimalNode, `  - address: "127.0.0.1:0"`, `  - { address: "127.0.0.1:0", type: quic }`, 1),
			`listeners[0].type (line 5): unknown value "quic"`},
		{"tls needs block", strings.Replace(minimalNode, `  - address: "127.0.0.1:0"`, `  - { address: "127.0.0.1:0", type: wss }`, 1),
			`listeners[0].tls (line 5): type wss needs a tls block`},
		{"path on tcp", strings.Replace(minimalNode, `  - address: "127.0.0.1:0"`, `  - { address: "127.0.0.1:0", path: /mqtt }`, 1),
			`listeners[0].path (line 5): path is for ws and wss listeners only`},
		{"cert identity needs cert", strings.Replace(minimalNode, `  - address: "127.0.0.1:0"`, `  - { address: "127.0.0.1:0", username_from_cert: true }`, 1),
			`listeners[0].username_from_cert (line 5): needs a client certificate`},
		{"trusted", strings.Replace(minimalNode, `  - address: "127.0.0.1:0"`, `  - { address: "127.0.0.1:0", proxy_protocol: { accept: true } }`, 1),
			`listeners[0].proxy_protocol.trusted (line 5): list the CIDRs`},
		{"bad address", strings.Replace(minimalNode, `  - address: "127.0.0.1:0"`, `  - address: "127.0.0.1"`, 1),
			`listeners[0].address (line 5): want host:port, got "127.0.0.1"`},
		{"acl access", minimalNode + "auth:\n  acl:\n    - { access: read, topic: a/# }\n",
			`auth.acl[0].access (line 11): unknown value "read"`},
		{"acl topic", minimalNode + "auth:\n  acl:\n    - { topic: a/#/b }\n",
			`auth.acl[0].topic (line 11): want an MQTT topic filter`},
		{"users file", minimalNode + "auth: { users_file: /nonexistent/users }\n",
			`auth.users_file (line 9): cannot read`},
		{"offline messages", minimalNode + "sessions:\n  max_offline_messages: 70000\n",
			`sessions.max_offline_messages (line 10): want 0`},
		{"expiry", minimalNode + "sessions: { max_expiry: 10ms }\n",
			`sessions.max_expiry (line 9): want a duration from 1s`},
		{"max qos", minimalNode + "mqtt:\n  max_qos: 3\n", `mqtt.max_qos (line 10): want 0, 1 or 2, got 3`},
		{"max keep alive", minimalNode + "mqtt:\n  max_keep_alive: 1500ms\n", `mqtt.max_keep_alive (line 10): want 0 (no cap) or whole seconds`},
		{"max keep alive range", minimalNode + "mqtt:\n  max_keep_alive: 24h\n", `mqtt.max_keep_alive (line 10): want 0 (no cap)`},
		{"gc headroom", minimalNode + "process: { gc_headroom: -1 }\n", `process.gc_headroom (line 9): want 0 (Go's default pacing) to 1099511627776 bytes, got -1`},
		{"no listeners", strings.Replace(minimalNode, "listeners:\n  - address: \"127.0.0.1:0\"\n", "", 1),
			`listeners: at least one listener is required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNode([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNodeBuiltInCode(t *testing.T) {
	n := &Node{
		Node:      NodeIdentity{Name: "n2"},
		Listeners: []NodeListener{{Address: "127.0.0.1:0"}},
		Mesh:      Mesh{Listen: "127.0.0.1:0", Peers: []string{"nats-route://127.0.0.1:4248"}},
	}
	n.SetDefaults()
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	if n.Sessions.MaxOfflineMessages != 1000 || n.Admin.Address != "127.0.0.1:9091" || n.Process.GCHeadroom != DefaultGCHeadroom {
		t.Errorf("defaults in code: %+v %+v %+v", n.Sessions, n.Admin, n.Process)
	}
}

func TestNodeGCHeadroom(t *testing.T) {
	for doc, want := range map[string]int{
		minimalNode: DefaultGCHeadroom,
		minimalNode + "process: { gc_headroom: 0 }\n":         0,
		minimalNode + "process: { gc_headroom: 268435456 }\n": 256 << 20,
	} {
		n, err := ParseNode([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if n.Process.GCHeadroom != want {
			t.Errorf("process.gc_headroom %d, want %d, from\n%s", n.Process.GCHeadroom, want, doc)
		}
	}
}

func TestExampleNodeConfigParses(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	n, err := LoadNode(filepath.Join(filepath.Dir(file), "..", "..", "examples", "node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Node.Name != "node1" || len(n.Auth.ACL) != 1 || n.File == "" {
		t.Errorf("example: %+v", n)
	}
	for _, want := range []string{"node node1", "listener tcp: tcp 127.0.0.1:18831, PROXY from 127.0.0.1/32", "routes on 127.0.0.1:6222", "admin: http://127.0.0.1:9091 (no token)"} {
		if s := n.Summary(); !strings.Contains(s, want) {
			t.Errorf("summary %q does not mention %q", s, want)
		}
	}
}

func TestSessionsDurability(t *testing.T) {
	for _, tt := range []struct{ extra, want string }{
		{"", "replicated"}, // routes: replicas automatic
		{"sessions: { durability: memory }\n", "memory"},  // explicit
		{"mesh: { listen: \"\", peers: [] }\n", "memory"}, // a single node: nothing to replicate to
		{"mesh: { listen: \"127.0.0.1:0\", replicas: 1 }\n", "memory"},
		{"mesh: { listen: \"127.0.0.1:0\", replicas: 3 }\n", "replicated"},
	} {
		cfg := minimalNode
		if strings.HasPrefix(tt.extra, "mesh:") {
			cfg = strings.Replace(cfg, "mesh:\n  listen: \"127.0.0.1:0\"\n  peers: [\"127.0.0.1:6223\"]\n", "", 1)
		}
		n, err := ParseNode([]byte(cfg + tt.extra))
		if err != nil {
			t.Fatalf("%q: %v", tt.extra, err)
		}
		if n.Sessions.Durability != tt.want {
			t.Errorf("%q: durability %q, want %q", tt.extra, n.Sessions.Durability, tt.want)
		}
	}
	_, err := ParseNode([]byte(minimalNode + "sessions: { durability: disk }\n"))
	if err == nil || !strings.Contains(err.Error(), "sessions.durability") {
		t.Errorf("durability disk: %v, want an error naming sessions.durability", err)
	}
}

// TestMeshTokenFile: mesh.token_file reads the cluster secret from a file
// (a mounted secret), and is refused beside mesh.token.
func TestMeshTokenFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mesh-token")
	if err := os.WriteFile(file, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := ParseNode([]byte(minimalNode + "  token_file: " + file + "\n"))
	if err != nil {
		t.Fatalf("token_file: %v", err)
	}
	if n.Mesh.Token != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("token_file: token %q", n.Mesh.Token)
	}
	if _, err := ParseNode([]byte(minimalNode + "  token: x\n  token_file: " + file + "\n")); err == nil || !strings.Contains(err.Error(), "mesh.token_file") {
		t.Errorf("token and token_file: %v", err)
	}
}

func TestParseNodeMeshBatch(t *testing.T) {
	for doc, want := range map[string]bool{minimalNode: false, minimalNode + "  batch: false\n": false, minimalNode + "  batch: true\n": true} {
		n, err := ParseNode([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if n.Mesh.Batches() != want {
			t.Errorf("%q: mesh.batch %v, want %v", doc, n.Mesh.Batches(), want)
		}
	}
	if _, err := ParseNode([]byte(minimalNode + "  batch: sometimes\n")); err == nil {
		t.Error("mesh.batch: sometimes: no error")
	}
}

func TestParseNodeMeshQoS0MaxDelay(t *testing.T) {
	for doc, want := range map[string]time.Duration{
		minimalNode:                               5 * time.Second,
		minimalNode + "  qos0_max_delay: 0\n":     0,
		minimalNode + "  qos0_max_delay: 500ms\n": 500 * time.Millisecond,
	} {
		n, err := ParseNode([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Mesh.QoS0MaxDelay.D(); got != want {
			t.Errorf("%q: mesh.qos0_max_delay %v, want %v", doc, got, want)
		}
	}
	if _, err := ParseNode([]byte(minimalNode + "  qos0_max_delay: -1s\n")); err == nil || !strings.Contains(err.Error(), "mesh.qos0_max_delay") {
		t.Errorf("mesh.qos0_max_delay: -1s: %v", err)
	}
}

// TestAdminAddressWithoutPortOneError: an admin address that does not
// parse is that one error, not also "reachable beyond loopback".
func TestAdminAddressWithoutPortOneError(t *testing.T) {
	_, err := ParseNode([]byte(minimalNode + "admin: { address: 127.0.0.1 }\n"))
	if err == nil || !strings.Contains(err.Error(), `admin.address (line 9): want host:port, got "127.0.0.1"`) ||
		strings.Contains(err.Error(), "beyond loopback") {
		t.Fatalf("error = %v\nwant only: admin.address (line 9): want host:port", err)
	}
}

// TestAdminTokenFileUnreadableOneError: an admin token_file that cannot be
// read is that error, not also "admin.token is empty".
func TestAdminTokenFileUnreadableOneError(t *testing.T) {
	_, err := ParseNode([]byte(minimalNode + "admin: { address: \"0.0.0.0:9091\", token_file: /nonexistent/token }\n"))
	if err == nil || !strings.Contains(err.Error(), "admin.token_file") || strings.Contains(err.Error(), "beyond loopback") {
		t.Fatalf("error = %v\nwant only the token_file error", err)
	}
}

// TestAdminBlankToken: a whitespace-only admin.token (or one with spaces
// around it) can never match the trimmed bearer credentials: refused, on
// the load balancer and on a node.
func TestAdminBlankToken(t *testing.T) {
	for _, tok := range []string{`"  "`, `"\t"`, `" s3cret "`} {
		if _, err := ParseNode([]byte(minimalNode + "admin: { token: " + tok + " }\n")); err == nil || !strings.Contains(err.Error(), "admin.token (line 9)") {
			t.Errorf("node, token %s: %v", tok, err)
		}
		if _, err := Parse([]byte(minimal + "admin: { token: " + tok + " }\n")); err == nil || !strings.Contains(err.Error(), "admin.token") {
			t.Errorf("load balancer, token %s: %v", tok, err)
		}
	}
	if _, err := Parse([]byte(minimal + "admin: { token: s3cret }\n")); err != nil {
		t.Errorf("a real token: %v", err)
	}
}
