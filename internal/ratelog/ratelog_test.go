package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRateLogSuppressesAndCounts(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	r := New(time.Hour)
	for range 5 {
		r.Warn(log, "a", "no server")
	}
	r.Warn(log, "b", "other key")
	if n := strings.Count(buf.String(), "no server"); n != 1 {
		t.Fatalf("logged %d times within the interval, want 1:\n%s", n, buf.String())
	}
	r.every = 0
	r.Warn(log, "a", "no server")
	if !strings.Contains(buf.String(), "suppressed=4") || !strings.Contains(buf.String(), "other key") {
		t.Errorf("want the suppressed count on the next line and other keys unaffected:\n%s", buf.String())
	}
}
