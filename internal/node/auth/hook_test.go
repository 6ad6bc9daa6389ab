package auth

import (
	"crypto/tls"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqlb/mqlb/internal/node/listen"

	"github.com/mqlb/mqlb/internal/testutil"
)

// CONNACK codes mochi sends for a refused OnConnectAuthenticate: 0x86 Bad
// User Name or Password in v5; in v3.1.1 mochi maps it to 0x05 Not
// authorized (packets.V5CodesToV3), not 0x04.
const (
	v5BadCredentials = 0x86
	v3NotAuthorized  = 0x05
)

func TestAnonymous(t *testing.T) {
	for _, allow := range []bool{true, false} {
		_, addrs := startBroker(t, mustNew(t, Options{AllowAnonymous: allow}))
		_, ack, err := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "anon5"})
		if allow && err != nil {
			t.Errorf("AllowAnonymous: v5 refused: %v", err)
		}
		if !allow && (ack == nil || ack.ReasonCode != v5BadCredentials) {
			t.Errorf("anonymous refused: v5 connack %+v err %v, want reason %#x", ack, err, v5BadCredentials)
		}
		_, code := connectV311(t, addrs["tcp"], "anon3", "", "")
		if want := map[bool]byte{true: 0, false: v3NotAuthorized}[allow]; code != want {
			t.Errorf("AllowAnonymous=%v: v3.1.1 return code %#x, want %#x", allow, code, want)
		}
	}
}

// TestUsernameWithoutCredentialStore: with no credential store at all (no
// users file, no backends) and anonymous clients allowed, a client that
// sends a username (and maybe a password) is let in unverified, as
// mosquitto, EMQX and VerneMQ do: nothing could check it. With anonymous
// clients refused, or with a store, it is checked as before.
func TestUsernameWithoutCredentialStore(t *testing.T) {
	_, open := startBroker(t, mustNew(t, Options{AllowAnonymous: true}))
	if _, ack, err := connectV5(t, open["tcp"], nil, paho.Connect{ClientID: "u5", Username: "bob", Password: []byte("x")}); err != nil {
		t.Errorf("no store, anonymous allowed: v5 with a username refused: connack %+v err %v", ack, err)
	}
	if _, code := connectV311(t, open["tcp"], "u3", "bob", ""); code != 0 {
		t.Errorf("no store, anonymous allowed: v3.1.1 with a username: return code %#x, want 0", code)
	}

	_, closed := startBroker(t, mustNew(t, Options{AllowAnonymous: false}))
	if _, ack, err := connectV5(t, closed["tcp"], nil, paho.Connect{ClientID: "u5", Username: "bob", Password: []byte("x")}); ack == nil || ack.ReasonCode != v5BadCredentials {
		t.Errorf("no store, anonymous refused: v5 connack %+v err %v, want %#x", ack, err, v5BadCredentials)
	}

	_, withStore := startBroker(t, mustNew(t, Options{AllowAnonymous: true, UsersFile: usersFile(t, hashLine(t, "alice", "right"))}))
	if _, code := connectV311(t, withStore["tcp"], "u3", "bob", "x"); code != v3NotAuthorized {
		t.Errorf("users file, anonymous allowed: unknown user: return code %#x, want %#x", code, v3NotAuthorized)
	}
}
func TestPasswords(t *testing.T) {
	h := mustNew(t, Options{UsersFile: usersFile(t, hashLine(t, "alice", "right"))})
	_, addrs := startBroker(t, h)
	cases := []struct {
		name, user string
		pw         []byte
		ok         bool
	}{
		{"right password", "alice", []byte("right"), true},
		{"wrong password", "alice", []byte("wrong"), false},
		{"no password", "alice", nil, false},
		{"unknown user", "mallory", []byte("right"), false},
	}
	for _, tc := range cases {
		_, ack, err := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "p5", Username: tc.user, Password: tc.pw})
		if tc.ok && err != nil {
			t.Errorf("v5 %s: refused: %v", tc.name, err)
		}
		if !tc.ok && (ack == nil || ack.ReasonCode != v5BadCredentials) {
			t.Errorf("v5 %s: connack %+v err %v, want %#x", tc.name, ack, err, v5BadCredentials)
		}
		want := map[bool]byte{true: 0, false: v3NotAuthorized}[tc.ok]
		if _, code := connectV311(t, addrs["tcp"], "p3", tc.user, string(tc.pw)); code != want {
			t.Errorf("v3.1.1 %s: return code %#x, want %#x", tc.name, code, want)
		}
	}
}

// TestCertificateIdentityNeedsNoPassword: on a listener with
// UsernameFromCert the verified certificate is the credential. On any other
// listener it is not: a username equal to the CN needs its password, as
// for anyone (it used to be let in without one).
func TestCertificateIdentityNeedsNoPassword(t *testing.T) {
	ca := testutil.NewCA(t)
	h := mustNew(t, Options{UsersFile: usersFile(t, hashLine(t, "device-1", "pw-1"))})
	_, addrs := startBroker(t, h,
		listen.Options{ID: "mtls", Type: listen.TypeTLS, TLS: ca.ServerConfig(t, tls.RequireAndVerifyClientCert), UsernameFromCert: true},
		listen.Options{ID: "tls", Type: listen.TypeTLS, TLS: ca.ServerConfig(t, tls.VerifyClientCertIfGiven)})

	if _, _, err := connectV5(t, addrs["mtls"], ca.ClientConfig(t, "device-1"), paho.Connect{ClientID: "d1"}); err != nil {
		t.Errorf("verified certificate without password refused: %v", err)
	}
	_, ack, _ := connectV5(t, addrs["tls"], ca.ClientConfig(t, "device-1"), paho.Connect{ClientID: "d2", Username: "device-2"})
	if ack == nil || ack.ReasonCode != v5BadCredentials {
		t.Errorf("username other than the certificate CN without password: connack %+v, want %#x", ack, v5BadCredentials)
	}
	// Without UsernameFromCert the certificate does not stand in for the password.
	_, ack, _ = connectV5(t, addrs["tls"], ca.ClientConfig(t, "device-1"), paho.Connect{ClientID: "d3", Username: "device-1"})
	if ack == nil || ack.ReasonCode != v5BadCredentials {
		t.Errorf("username equal to the verified CN, no password, listener without UsernameFromCert: connack %+v, want %#x",
			ack, v5BadCredentials)
	}
	if _, _, err := connectV5(t, addrs["tls"], ca.ClientConfig(t, "device-1"),
		paho.Connect{ClientID: "d3", Username: "device-1", Password: []byte("pw-1")}); err != nil {
		t.Errorf("username equal to the verified CN with its password refused: %v", err)
	}
	// Claiming the name without a certificate is not enough.
	_, ack, _ = connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "d4", Username: "device-1"})
	if ack == nil || ack.ReasonCode != v5BadCredentials {
		t.Errorf("CN as username over plain TCP: connack %+v, want %#x", ack, v5BadCredentials)
	}
}

func TestReload(t *testing.T) {
	h := mustNew(t, Options{UsersFile: usersFile(t, hashLine(t, "alice", "pw"))})
	_, addrs := startBroker(t, h)
	login := func(user string) bool {
		_, _, err := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "r", Username: user, Password: []byte("pw")})
		return err == nil
	}
	if !login("alice") || login("bob") {
		t.Fatal("before reload: want alice in, bob out")
	}
	if err := h.Reload(Options{UsersFile: usersFile(t, hashLine(t, "bob", "pw"))}); err != nil {
		t.Fatal(err)
	}
	if login("alice") || !login("bob") {
		t.Error("after reload: want bob in, alice out")
	}
	bad := usersFile(t, "carol:not-a-hash")
	if err := h.Reload(Options{UsersFile: bad, AllowAnonymous: true}); err == nil {
		t.Fatal("reload with a bad users file succeeded")
	}
	if !login("bob") {
		t.Error("a failed reload replaced the working users")
	}
	if _, _, err := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "anon"}); err == nil {
		t.Error("a failed reload applied part of its options (anonymous access)")
	}
}

// TestReloadConcurrent swaps rule sets while ACL checks run, for the race
// detector; the last swap must be the one in force.
func TestReloadConcurrent(t *testing.T) {
	allowAll := Options{ACL: []Rule{{Allow: true, Access: AccessAll, Topic: "#"}}}
	denyAll := Options{ACL: []Rule{{Allow: false, Access: AccessAll, Topic: "#"}}, ACLDefault: true}
	h := mustNew(t, allowAll)
	cl := &mqtt.Client{ID: "c"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			if err := h.Reload(map[bool]Options{true: allowAll, false: denyAll}[i%2 == 0]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			h.OnACLCheck(cl, "t", true)
		}
	}
	if h.OnACLCheck(cl, "t", true) {
		t.Error("after the last reload (deny all) a publish is still allowed")
	}
}

func TestUnverifiedNamesUsers(t *testing.T) {
	cases := []struct {
		name       string
		o          Options
		unverified bool
		names      bool
	}{
		{"no rules", Options{AllowAnonymous: true}, true, false},
		{"client rule", Options{AllowAnonymous: true, ACL: []Rule{{Allow: true, Access: "all", Topic: "d/%c/#"}}}, true, false},
		{"%u in a level", Options{AllowAnonymous: true, ACL: []Rule{{Allow: true, Access: "all", Topic: "d/u-%u/#"}}}, true, true},
		{"named users", Options{AllowAnonymous: true, ACL: []Rule{{Allow: true, Access: "all", Topic: "#", Users: []string{"admin"}}}}, true, true},
		{"anonymous refused", Options{ACL: []Rule{{Allow: true, Access: "all", Topic: "#", Users: []string{"admin"}}}}, false, true},
		{"users file", Options{AllowAnonymous: true, UsersFile: usersFile(t, hashLine(t, "a", "b"))}, false, false},
	}
	for _, tc := range cases {
		h := mustNew(t, tc.o)
		if h.Unverified() != tc.unverified || h.NamesUsers() != tc.names {
			t.Errorf("%s: Unverified %v NamesUsers %v, want %v %v", tc.name, h.Unverified(), h.NamesUsers(), tc.unverified, tc.names)
		}
	}
}
