package main

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// gogc reads go_gc_gogc_percent from a node's /metrics.
func gogc(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^go_gc_gogc_percent (\d+)$`).FindSubmatch(b)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// TestNodeGCPacing: mqlb node paces its collector by process.gc_headroom
// (GOGC 400 while its heap is small), and a reload to 0 gives Go's default
// back.
func TestNodeGCPacing(t *testing.T) {
	// an empty GOGC is Go's default; the operator's GOGC would stand
	file, cmd, stderr := startSoloNode(t, "gc", "", "GOGC=")
	admin := logged(t, stderr, `msg="node started".* admin=(\S+)`)
	logged(t, stderr, `msg="garbage collector paced by headroom" gc_headroom=(67108864)`)
	testutil.Eventually(t, 30*time.Second, func() bool { return gogc(t, admin) == "400" },
		"go_gc_gogc_percent 400; log:\n%s", stderr)

	cfg, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file, append(cfg, "process: { gc_headroom: 0 }\n"...), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	logged(t, stderr, `msg="garbage collector: Go's default pacing" reason="(process.gc_headroom is 0)"`)
	testutil.Eventually(t, 30*time.Second, func() bool { return gogc(t, admin) == "100" },
		"go_gc_gogc_percent 100 after the reload; log:\n%s", stderr)
}
