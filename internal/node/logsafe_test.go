package node

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// logCapture is a log destination the test can read while the node writes.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// leaks returns the forms in which secret appears in log: as text, as hex,
// or as the decimal byte list fmt prints for a []byte.
func leaks(log, secret string) []string {
	var found []string
	dec := strings.Trim(fmt.Sprint([]byte(secret[:8])), "[]")
	for _, form := range []string{secret, hex.EncodeToString([]byte(secret)), dec} {
		if strings.Contains(log, form) {
			found = append(found, form)
		}
	}
	return found
}

// TestLogsHoldNoSecrets drives a node, logging at debug level, through what
// made mochi log packets — a second CONNECT carrying a password, a refused
// QoS 1 publish from a 3.1.1 client, a refused 1 MiB publish, a wrong
// password — and fails on any password or payload byte in the log, and on a
// log that grows with the payload.
func TestLogsHoldNoSecrets(t *testing.T) {
	const (
		password = "Pa55w0rd-SECRET-7f3e9b"
		wrong    = "Wr0ng-SECRET-c41d2a"
		payload  = "PAYLOAD-SECRET-5b8e1f"
	)
	dir := t.TempDir()
	users := usersFile(t, "alice", password)
	cfg := nodeConfig("logs", 0, filepath.Join(dir, "data"))
	cfg.Mesh.Listen = ""
	no := false
	cfg.Auth = config.NodeAuth{AllowAnonymous: &no, UsersFile: users,
		ACL: []config.ACLRule{{Allow: false, Access: "publish", Topic: "denied/#"}}}
	cfg.SetDefaults()
	n, logs := startLogged(t, cfg, slog.LevelDebug)
	addr := n.ListenerAddr("tcp")

	c := rawDial(t, addr) // a second CONNECT: a protocol violation mochi logs with the packet
	write(t, c, rawConnect(4, "twice", "alice", password))
	if code := readConnack(t, c, 4); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	write(t, c, rawConnect(4, "twice", "alice", password))
	readUntilClosed(t, c)

	for _, size := range []int{len(payload), 1<<20 - 64} { // a refused QoS 1 publish (3.1.1)
		c = rawDial(t, addr)
		write(t, c, rawConnect(4, "denied", "alice", password))
		readConnack(t, c, 4)
		body := bytes.Repeat([]byte(payload), size/len(payload)+1)[:size]
		pub := mqttwire.AppendVarint([]byte{0x32}, 2+len("denied/x")+2+len(body))
		pub = append(append(append(pub, 0, byte(len("denied/x"))), "denied/x"...), 0, 7)
		write(t, c, append(pub, body...))
		readUntilClosed(t, c)
	}

	c = rawDial(t, addr) // a wrong password
	write(t, c, rawConnect(5, "guess", "alice", wrong))
	if code := readConnack(t, c, 5); code != 0x86 {
		t.Fatalf("CONNACK 0x%02x for a wrong password, want 0x86", code)
	}

	testutil.Eventually(t, waitFor, func() bool {
		return strings.Count(logs.String(), "error processing packet") >= 3
	}, "mochi's packet errors not logged:\n%s", logs.String())
	quiesce()
	n.Close()
	out := logs.String()
	for _, secret := range []string{password, wrong, payload} {
		if found := leaks(out, secret); len(found) > 0 {
			t.Errorf("log holds %q as %q:\n%s", secret, found, cut(out))
		}
	}
	if len(out) > 64<<10 {
		t.Errorf("log of %d bytes for a handful of packets: it grows with payloads", len(out))
	}
}
