package auth

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

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
