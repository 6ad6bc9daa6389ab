package lb

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestReloadAnswerWarnings: POST /-/reload answers what the reload warned
// about in the log — an expired certificate (the date first, the time since
// in days), a certificate tls.ciphers cannot use, a runtime change the file
// overrode — beside "status": "reloaded" (the audit found them only in the
// process log); a reload with nothing to say has no warnings.
func TestReloadAnswerWarnings(t *testing.T) {
	ca := testutil.NewCA(t)
	good := ca.Server("good.example")
	end := time.Date(2020, 2, 1, 0, 0, 0, 0, time.UTC)
	old := ca.ServerValid("old.example", end.AddDate(-1, 0, 0), end)
	b := testutil.StartMochi(t)
	file := filepath.Join(t.TempDir(), "mqlb.yaml")
	write := func(is testutil.Issued, tlsExtra string, weight int) {
		cfg := fmt.Sprintf("listeners:\n  - { name: mqtts, address: \"127.0.0.1:0\", upstream: u, tls: { cert: %q, key: %q%s } }\n"+
			"upstreams: { u: { servers: [{ name: s, address: %q, weight: %d }, { name: t, address: %q }] } }\n"+
			"admin: { address: \"127.0.0.1:0\" }\naccess_log: { path: \"off\" }\n", is.CertFile, is.KeyFile, tlsExtra, b.Addr, weight, b.Addr)
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(good, "", 1)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	logs := new(testutil.SyncBuffer)
	l := runLB(t, cfg, Options{File: file, Log: slog.New(slog.NewTextHandler(logs, nil))})
	reload := func() (int, map[string]any) {
		code, body := apiDo(t, "POST", "http://"+l.AdminAddr()+"/-/reload", "")
		var answer map[string]any
		if err := json.Unmarshal([]byte(body), &answer); err != nil {
			t.Fatalf("reload answer %q: %v", body, err)
		}
		return code, answer
	}
	if code, answer := reload(); code != 200 || len(answer) != 1 || answer["status"] != "reloaded" {
		t.Fatalf("reload without a warning: %d %v", code, answer)
	}

	if err := l.SetWeight(context.Background(), "u", "s", 3); err != nil {
		t.Fatal(err)
	}
	write(old, ", ciphers: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]", 2)
	code, answer := reload()
	serial := fmt.Sprintf("%02x", old.TLS.Leaf.SerialNumber.Bytes())
	days := int(time.Since(end) / (24 * time.Hour))
	want := []any{
		fmt.Sprintf(`certificate "old.example" (serial %s) of listener mqtts expired on 2020-02-01T00:00:00Z, %d days ago`, serial, days),
		fmt.Sprintf(`certificate "old.example" (serial %s) of listener mqtts has an ECDSA key, which none of tls.ciphers `+
			`(TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) can use: TLS 1.2 clients given it fail the handshake; list a TLS_ECDHE_ECDSA_ suite`, serial),
		"runtime change dropped: the config file changed server s of upstream u",
	}
	if got, _ := answer["warnings"].([]any); code != 200 || answer["status"] != "reloaded" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reload answer %d %v\nwant warnings %q", code, answer, want)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf(`expired on 2020-02-01T00:00:00Z, %d days ago`, days)) {
		t.Errorf("the log lacks the warning:\n%s", logs)
	}
}
