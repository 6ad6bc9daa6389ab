package node

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestJSONLogNoDuplicateKeys: the node's JSON log lines, the "listening"
// line included, have each key once (the listener wrapper and the front
// door both added listener=).
func TestJSONLogNoDuplicateKeys(t *testing.T) {
	cfg := nodeConfig("jsonkeys", 0, t.TempDir())
	cfg.Mesh.Listen = ""
	_, logs := startLoggedBy(t, cfg, func(w io.Writer) slog.Handler {
		return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})
	})
	testutil.Eventually(t, waitFor, func() bool { return strings.Contains(logs.String(), `"msg":"listening"`) },
		"no listening line:\n%s", logs.String())
	testutil.NoDuplicateKeys(t, logs.String())
}
