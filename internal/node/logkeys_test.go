package node

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestJSONLogNoDuplicateKeys: the node's JSON log lines, the "listening"
// line included, have each key once (the listener wrapper and the front
// door both added listener=).
func TestJSONLogNoDuplicateKeys(t *testing.T) {
	cfg := nodeConfig("jsonkeys", 0, t.TempDir())
	cfg.Mesh.Listen = ""
	logs := &logCapture{}
	n, err := New(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { quiesce(); n.Close() })
	testutil.Eventually(t, waitFor, func() bool { return strings.Contains(logs.String(), `"msg":"listening"`) },
		"no listening line:\n%s", logs.String())
	testutil.NoDuplicateKeys(t, logs.String())
}
