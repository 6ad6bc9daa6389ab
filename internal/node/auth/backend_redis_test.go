package auth

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestRedisLogsThroughTheNode: go-redis's own lines (its pool's dial
// retries) go to the hook's logger, at debug and as records of its format,
// not to stderr unformatted, where they broke log.format json.
func TestRedisLogsThroughTheNode(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now: every dial is refused
	h := mustNew(t, Options{Backends: []config.AuthBackend{{Type: "redis", Address: dead, Key: "mqtt_user:%u", Timeout: config.Duration(3 * time.Second)}}})
	_, addrs := startBroker(t, h)
	logs := new(testutil.SyncBuffer)
	h.SetOpts(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
	_, ack, _ := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "rd", Username: "rduser", UsernameFlag: true,
		Password: []byte("pw"), PasswordFlag: true})
	if ack == nil || ack.ReasonCode != 0x88 {
		t.Errorf("redis down: CONNACK %+v, want 0x88 server unavailable", ack)
	}
	if !strings.Contains(logs.String(), `"component":"redis"`) || !strings.Contains(logs.String(), "dial") {
		t.Errorf("no go-redis record in the hook's log:\n%s", logs)
	}
}

// TestRedisStoreTimeout: with the redis-server hung (SIGSTOPped), a lookup
// fails within about the store's timeout, whether the client's pool holds
// a connection (the server hung after answering) or must dial one; the
// client is refused (an error: server unavailable), not held for
// go-redis's own 3 s read timeout and retries.
func TestRedisStoreTimeout(t *testing.T) {
	rs := testutil.StartRedis(t)
	t.Cleanup(func() { _ = syscall.Kill(rs.Pid(), syscall.SIGCONT) }) // before StartRedis's own cleanup stops it
	seed := redis.NewClient(&redis.Options{Network: "unix", Addr: rs.Socket, DisableIdentity: true})
	if err := seed.HSet(context.Background(), "mqtt_user:u", "password_hash", hashOf(t, "pw")).Err(); err != nil {
		t.Fatal(err)
	}
	seed.Close()
	for _, timeout := range []time.Duration{300 * time.Millisecond, time.Second} {
		cfg := []config.AuthBackend{{Type: "redis", Address: rs.Socket, Key: "mqtt_user:%u", Timeout: config.Duration(timeout)}}
		warm, err := buildBackends(cfg, "")
		if err != nil {
			t.Fatal(err)
		}
		cold, err := buildBackends(cfg, "")
		if err != nil {
			t.Fatal(err)
		}
		if d, _, err := chain(warm, Request{Username: "u", Password: "pw"}); err != nil || d.Result != Allow {
			t.Fatalf("redis up: %v %v", d.Result, err)
		}
		if err := syscall.Kill(rs.Pid(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		for name, bs := range map[string][]backendEntry{"pooled connection": warm, "new connection": cold} {
			start := time.Now()
			d, _, err := chain(bs, Request{Username: "u", Password: "pw"})
			took := time.Since(start)
			t.Logf("timeout %v, %s: refused after %v: %v", timeout, name, took.Round(time.Millisecond), err)
			if err == nil {
				t.Errorf("timeout %v, %s: redis hung, yet %v", timeout, name, d.Result)
			}
			// A correctness deadline, not a performance bound: the
			// answer must come about when the timeout says.
			if limit := 3*timeout + time.Second; took > limit {
				t.Errorf("timeout %v, %s: refused after %v, want within %v", timeout, name, took.Round(time.Millisecond), limit)
			}
		}
		if err := syscall.Kill(rs.Pid(), syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		closeBackends(warm)
		closeBackends(cold)
	}
}

// hashOf is a bcrypt hash of pw at the minimum cost.
func hashOf(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}
