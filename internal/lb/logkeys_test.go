package lb

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestJSONLogNoDuplicateKeys: the load balancer's JSON log lines, the
// "listening" line included, have each key once.
func TestJSONLogNoDuplicateKeys(t *testing.T) {
	b := testutil.StartMochi(t)
	cfg, err := config.Parse([]byte(`listeners: [{ name: mqtt, address: "127.0.0.1:0", upstream: u }]
upstreams: { u: { servers: [{ name: s, address: "` + b.Addr + `" }] } }
access_log: { path: "off" }
`))
	if err != nil {
		t.Fatal(err)
	}
	logs := new(testutil.SyncBuffer)
	l, err := New(cfg, Options{Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), `"msg":"listening"`) },
		"no listening line:\n%s", logs)
	for _, line := range bytes.Split(bytes.TrimSpace([]byte(logs.String())), []byte("\n")) {
		dups, err := testutil.DuplicateKeys(line)
		if err != nil {
			t.Errorf("not JSON: %v: %s", err, line)
		}
		if len(dups) > 0 {
			t.Errorf("duplicate keys %v in %s", dups, line)
		}
	}
}
