package node

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestRefusedLoginLoggedAtInfo: a refused login (wrong password, unknown
// user, anonymous not allowed) is an info line with the client id,
// username, remote address and reason, never the password, as mosquitto
// and EMQX log failed logins; it used to go through mochi's logger, whose
// info lines the node writes at debug. Repeated failures of one username
// from one address write one line per interval.
func TestRefusedLoginLoggedAtInfo(t *testing.T) {
	const password, wrong = "Pa55w0rd-authlog", "Wr0ng-authlog-secret"
	cfg := nodeConfig("authlog", 0, filepath.Join(t.TempDir(), "data"))
	cfg.Mesh.Listen = ""
	no := false
	cfg.Auth = config.NodeAuth{AllowAnonymous: &no, UsersFile: usersFile(t, "alice", password)}
	cfg.SetDefaults()
	n, logs := startLogged(t, cfg, slog.LevelInfo)
	addr := n.ListenerAddr("tcp")
	refuse := func(id, user, pass string) {
		c := rawDial(t, addr)
		write(t, c, rawConnect(5, id, user, pass))
		if code := readConnack(t, c, 5); code == 0 {
			t.Fatalf("%s: accepted", id)
		}
		readUntilClosed(t, c)
	}
	refuse("guess-1", "alice", wrong)
	refuse("nobody-1", "mallory", wrong)
	refuse("anon-1", "", "")
	for i := range 3 { // the same address and username again: within the interval, not logged
		refuse("guess-again-"+string(rune('a'+i)), "alice", wrong)
	}
	want := map[string]string{
		"guess-1":  `username=alice reason="denied by `,
		"nobody-1": `username=mallory reason="unknown user"`,
		"anon-1":   `username="" reason="anonymous not allowed"`,
	}
	var lines []string
	testutil.Eventually(t, waitFor, func() bool {
		lines = nil
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `msg="connection refused"`) {
				lines = append(lines, l)
			}
		}
		return len(lines) >= len(want)
	}, "refused logins not logged at info:\n%s", logs.String())
	for id, fields := range want {
		found := false
		for _, l := range lines {
			if strings.Contains(l, "client_id="+id+" ") {
				found = true
				if !strings.Contains(l, "level=INFO") || !strings.Contains(l, "remote=127.0.0.1:") || !strings.Contains(l, fields) {
					t.Errorf("%s logged as\n%s\nwant level=INFO, remote=, %s", id, l, fields)
				}
			}
		}
		if !found {
			t.Errorf("no line for %s in\n%s", id, strings.Join(lines, "\n"))
		}
	}
	if strings.Contains(logs.String(), "guess-again-") {
		t.Errorf("repeated failures of one username from one address not rate-limited:\n%s", strings.Join(lines, "\n"))
	}
	if strings.Contains(logs.String(), wrong) || strings.Contains(logs.String(), password) {
		t.Errorf("a password in the log:\n%s", logs.String())
	}
}
