package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/node/auth"
	"github.com/mqlb/mqlb/internal/testutil"
)

// userACL is what every store grants its user: everything under
// shared/<user name>/ and publishing its own status, through placeholders.
var userACL = []map[string]any{
	{"allow": true, "access": "all", "topic": "shared/%u/#"},
	{"allow": true, "access": "publish", "topic": "clients/%c/status"},
}

func bcryptOf(t *testing.T, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// authStores starts every kind of credential store, each knowing one user
// (file-user, http-user, pg-user, redis-user, jwt-user; password "pw-"
// plus the user, or for jwt-user a signed token), and returns the backends
// config and the jwt-user's token.
type authStores struct {
	backends []config.AuthBackend
	token    string
	pg       *testutil.Postgres
	redis    *testutil.Redis
	httpSvc  *httptest.Server
	httpHits atomic.Int64
}

func startAuthStores(t *testing.T) *authStores {
	s := &authStores{}
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("file-user:"+bcryptOf(t, "pw-file-user")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.httpSvc = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.httpHits.Add(1)
		var req auth.Request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		switch {
		case req.Username != "http-user":
			fmt.Fprint(w, `{"result":"ignore"}`) // not allow/deny: an error
		case req.Password == "pw-http-user":
			json.NewEncoder(w).Encode(map[string]any{"result": "allow", "acl": userACL})
		default:
			fmt.Fprint(w, `{"result":"deny"}`)
		}
	}))
	t.Cleanup(s.httpSvc.Close)

	s.pg = testutil.StartPostgres(t)
	s.pg.Exec(t, "CREATE TABLE mqtt_user (username text PRIMARY KEY, password_hash text NOT NULL)")
	s.pg.Exec(t, "CREATE TABLE mqtt_acl (username text, allow boolean, access text, topic text)")
	s.pg.Exec(t, "INSERT INTO mqtt_user VALUES ('pg-user', $1)", bcryptOf(t, "pw-pg-user"))
	for _, r := range userACL {
		s.pg.Exec(t, "INSERT INTO mqtt_acl VALUES ('pg-user', $1, $2, $3)", r["allow"], r["access"], r["topic"])
	}

	s.redis = testutil.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Network: "unix", Addr: s.redis.Socket, DisableIdentity: true})
	defer rc.Close()
	acl, _ := json.Marshal(userACL)
	if err := rc.HSet(context.Background(), "mqtt_user:redis-user", "password_hash", bcryptOf(t, "pw-redis-user"), "acl", string(acl)).Err(); err != nil {
		t.Fatal(err)
	}

	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"username": "jwt-user", "acl": userACL,
		"exp": time.Now().Add(time.Hour).Unix()})
	var err error
	if s.token, err = tok.SignedString([]byte("jwt-secret-of-at-least-32-bytes!")); err != nil {
		t.Fatal(err)
	}

	s.backends = []config.AuthBackend{
		{Type: "file", UsersFile: users},
		{Type: "postgres", DSN: s.pg.DSN, Query: "SELECT password_hash FROM mqtt_user WHERE username = @username",
			ACLQuery: "SELECT allow, access, topic FROM mqtt_acl WHERE username = @username"},
		{Type: "redis", Address: s.redis.Socket, Key: "mqtt_user:%u"},
		{Type: "jwt", Secret: "jwt-secret-of-at-least-32-bytes!"},
		{Type: "http", URL: s.httpSvc.URL, CacheTTL: config.Duration(time.Minute)},
	}
	for i := range s.backends {
		s.backends[i].Timeout = config.Duration(2 * time.Second)
	}
	return s
}

func (s *authStores) password(user string) string {
	if user == "jwt-user" {
		return s.token
	}
	return "pw-" + user
}

// rawConnackCode sends a CONNECT straight to addr and returns the CONNACK
// code.
func rawConnackCode(t *testing.T, addr string, version byte, id, user, pw string) byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &mqttwire.Connect{Version: version, ClientID: id, CleanStart: true, KeepAlive: 30,
		Username: user, HasUsername: true, Password: []byte(pw), HasPassword: true}
	if _, err := conn.Write(mqttwire.AppendConnect(nil, c)); err != nil {
		t.Fatal(err)
	}
	var buf []byte
	tmp := make([]byte, 64)
	for {
		n, err := conn.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if _, code, _, perr := mqttwire.ParseConnack(buf, version); perr == nil {
			return code
		}
		if err != nil {
			t.Fatalf("%s: no CONNACK: read % x, %v", id, buf, err)
		}
	}
}

func withCreds(user, pw string) func(*paho.Connect) {
	return func(c *paho.Connect) {
		c.Username, c.UsernameFlag, c.Password, c.PasswordFlag = user, true, []byte(pw), true
	}
}

func subCode(t *testing.T, c *v5, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 1 {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

func pubCode(t *testing.T, c *v5, topic string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)})
	if pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

// TestAuthBackends: a two-node cluster whose nodes ask five stores in turn
// (file, postgres, redis, jwt, http). Each store's user connects, and its
// ACL (from the store, with %u and %c; auth.acl grants the file user the
// same) decides publish and subscribe across the nodes; wrong passwords are
// refused; a store that is down refuses with server unavailable.
func TestAuthBackends(t *testing.T) {
	stores := startAuthStores(t)
	no := false
	cl, err := startCluster("authbackends", 2, func(c *config.Node) {
		c.Auth = config.NodeAuth{AllowAnonymous: &no, ACLDefault: "deny", Backends: stores.backends,
			ACL: []config.ACLRule{
				{Allow: true, Access: "all", Topic: "shared/%u/#", Users: []string{"file-user"}},
				{Allow: true, Access: "publish", Topic: "clients/%c/status", Users: []string{"file-user"}},
			}}
		c.SetDefaults()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.close()
	cl.ready(t)
	for _, user := range []string{"file-user", "pg-user", "redis-user", "jwt-user", "http-user"} {
		t.Run(user, func(t *testing.T) {
			pw := stores.password(user)
			if code := rawConnackCode(t, cl.addr(0), mqttwire.V5, user+"-x", user, pw+"-wrong"); code != 0x86 {
				t.Errorf("wrong password: CONNACK 0x%02x, want 0x86", code)
			}
			if code := rawConnackCode(t, cl.addr(0), mqttwire.V311, user+"-y", user, pw); code != 0 {
				t.Fatalf("v3.1.1: CONNACK 0x%02x", code)
			}
			sub := dialV5(t, cl.addr(1), user+"-sub", true, 0, withCreds(user, pw))
			pub := dialV5(t, cl.addr(0), user+"-pub", true, 0, withCreds(user, pw))
			if code := subCode(t, sub, "shared/"+user+"/#"); code != 1 {
				t.Fatalf("subscribe own tree: 0x%02x", code)
			}
			if code := subCode(t, sub, "shared/someone-else/#"); code != 0x87 {
				t.Errorf("subscribe another user's tree: 0x%02x, want 0x87", code)
			}
			testutil.Eventually(t, waitFor, func() bool {
				pubCode(t, pub, "shared/"+user+"/probe")
				return sub.count() > 0
			}, "cross-node delivery for %s", user)
			if code := pubCode(t, pub, "shared/someone-else/x"); code != 0x87 {
				t.Errorf("publish to another user's tree: 0x%02x, want 0x87", code)
			}
			if code := pubCode(t, pub, "clients/"+user+"-pub/status"); code != 0 {
				t.Errorf("publish own status (%%c): 0x%02x", code)
			}
			if code := pubCode(t, pub, "clients/"+user+"-sub/status"); code != 0x87 {
				t.Errorf("publish another client's status: 0x%02x, want 0x87", code)
			}
		})
	}
	t.Run("http cache", func(t *testing.T) {
		before := stores.httpHits.Load()
		for i := range 3 {
			if code := rawConnackCode(t, cl.addr(0), mqttwire.V5, fmt.Sprintf("c-%d", i), "http-user", "pw-http-user"); code != 0 {
				t.Fatalf("CONNACK 0x%02x", code)
			}
		}
		// Each request key holds the client id: three ids, three asks;
		// the same id again is answered from the cache.
		if code := rawConnackCode(t, cl.addr(0), mqttwire.V5, "c-0", "http-user", "pw-http-user"); code != 0 {
			t.Fatalf("CONNACK 0x%02x", code)
		}
		if n := stores.httpHits.Load() - before; n != 3 {
			t.Fatalf("http service asked %d times, want 3", n)
		}
	})
	t.Run("store down fails closed", func(t *testing.T) {
		stores.redis.Stop()
		for _, v := range []struct{ version, want byte }{{mqttwire.V5, 0x88}, {mqttwire.V311, 0x03}} {
			if code := rawConnackCode(t, cl.addr(1), v.version, "r-down", "redis-user", "pw-redis-user"); code != v.want {
				t.Errorf("redis down, v%d: CONNACK 0x%02x, want 0x%02x", v.version, code, v.want)
			}
		}
		// The file user is decided before the store that is down.
		if code := rawConnackCode(t, cl.addr(1), mqttwire.V5, "f-ok", "file-user", "pw-file-user"); code != 0 {
			t.Errorf("file user with redis down: CONNACK 0x%02x", code)
		}
		stores.pg.Stop()
		if code := rawConnackCode(t, cl.addr(0), mqttwire.V5, "p-down", "pg-user", "pw-pg-user"); code != 0x88 {
			t.Errorf("postgres down: CONNACK 0x%02x, want 0x88", code)
		}
		for i, n := range cl.nodes {
			if err := n.Healthy(); err != nil {
				t.Errorf("node %d unhealthy after stores went down: %v", i, err)
			}
		}
	})
}
