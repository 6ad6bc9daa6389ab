package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

func TestHashLineRoundTrip(t *testing.T) {
	line, err := HashLine("alice", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "alice:$2a$10$") {
		t.Fatalf("HashLine = %q, want alice:$2a$10$…", line)
	}
	// htpasswd -B writes $2y$; the same hash under that prefix must load.
	bob := strings.Replace(hashLine(t, "bob", "pw"), "$2a$", "$2y$", 1)
	users, err := loadUsers(usersFile(t, "# users", "", line, "  "+bob+"  ", "user:with:colons"+bob[len("bob"):]))
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 3 {
		t.Fatalf("loaded %d users, want 3", len(users))
	}
	for user, pw := range map[string]string{"alice": "s3cret", "bob": "pw", "user:with:colons": "pw"} {
		if err := bcrypt.CompareHashAndPassword(users[user], []byte(pw)); err != nil {
			t.Errorf("%s: password does not match the stored hash: %v", user, err)
		}
	}
}

func TestHashLineRejectsBadInput(t *testing.T) {
	for _, u := range []string{"", "#admin", "a\nb", " padded"} {
		if _, err := HashLine(u, "pw"); err == nil {
			t.Errorf("HashLine(%q) accepted a username the users file cannot hold", u)
		}
	}
	if _, err := HashLine("alice", strings.Repeat("x", 73)); err == nil {
		t.Error("HashLine accepted a password longer than bcrypt's 72 bytes")
	}
}

func TestUsersFileErrorsNameFileAndLine(t *testing.T) {
	good := hashLine(t, "alice", "pw")
	goodHash := good[len("alice:"):]
	cases := []struct {
		name   string
		bad    string
		want   string
		secret string // must not appear in the error
	}{
		{"no colon", "hunter2-pasted-alone", "want username:bcrypt-hash", "hunter2"},
		{"plaintext password", "bob:hunter2", "not a bcrypt hash", "hunter2"},
		{"empty username", ":" + goodHash, "empty username", goodHash},
		{"truncated hash", "bob:" + goodHash[:20], "not a bcrypt hash", goodHash[:20]},
		{"duplicate", good, "duplicate user", goodHash},
	}
	for _, tc := range cases {
		path := usersFile(t, "# line 1", good, tc.bad)
		_, err := loadUsers(path)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, path+":3:") || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: error %q, want %q and %q", tc.name, msg, path+":3:", tc.want)
		}
		if strings.Contains(msg, tc.secret) || strings.Contains(msg, "$2a$04$") {
			t.Errorf("%s: error %q leaks the hash or password", tc.name, msg)
		}
	}
	if _, err := New(Options{UsersFile: "/nonexistent/users.txt"}); err == nil ||
		!strings.Contains(err.Error(), "/nonexistent/users.txt") {
		t.Errorf("missing file: error %v, want one naming the path", err)
	}
}

// TestUnknownUserComparedAtUsersCost: an unknown user's password is compared
// against a dummy hash of the users' own bcrypt cost, so that a refusal
// takes as long as a known user's: not a fixed cost 10 that answers faster
// than a file hashed at cost 12, or takes seconds longer than one at cost 4.
func TestUnknownUserComparedAtUsersCost(t *testing.T) {
	six, err := hashLineCost("carol", "pw", 6)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		lines []string
		want  int
	}{
		{"cost 4", []string{hashLine(t, "alice", "pw")}, bcrypt.MinCost},
		{"highest of 4 and 6", []string{hashLine(t, "alice", "pw"), six}, 6},
		{"no users", []string{"# nobody"}, hashCost},
	} {
		f, err := newFileBackend(usersFile(t, c.lines...))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := bcrypt.Cost(f.dummy); err != nil || got != c.want {
			t.Errorf("%s: unknown users compared at cost %d (%v), want %d", c.name, got, err, c.want)
		}
	}
}

// TestBcryptLongPassword: bcrypt reads 72 bytes of a password; a longer
// one never matches, in the users file and in Redis (postgres shares
// checkHash), while the 72-byte password itself still does.
func TestBcryptLongPassword(t *testing.T) {
	pw72 := strings.Repeat("p", 36) + strings.Repeat("w", 36)
	f, err := newFileBackend(usersFile(t, hashLine(t, "long", pw72)))
	if err != nil {
		t.Fatal(err)
	}
	rs := testutil.StartRedis(t)
	seed := redis.NewClient(&redis.Options{Network: "unix", Addr: rs.Socket, DisableIdentity: true})
	defer seed.Close()
	if err := seed.HSet(context.Background(), "mqtt_user:long", "password_hash", hashOf(t, pw72)).Err(); err != nil {
		t.Fatal(err)
	}
	rb, err := newRedisBackend(config.AuthBackend{Type: "redis", Address: rs.Socket, Key: "mqtt_user:%u", Timeout: config.Duration(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	for name, b := range map[string]Backend{"file": f, "redis": rb} {
		for _, tc := range []struct {
			pw   string
			want Result
		}{{pw72, Allow}, {pw72 + "EXTRA", Deny}, {pw72 + "w", Deny}, {pw72[:71], Deny}} {
			d, err := b.Authenticate(context.Background(), Request{Username: "long", Password: tc.pw})
			if err != nil || d.Result != tc.want {
				t.Errorf("%s, password of %d bytes: %v %v, want %v", name, len(tc.pw), d.Result, err, tc.want)
			}
		}
	}
}
