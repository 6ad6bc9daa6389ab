package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// waitMatch waits until re matches what f returns and gives the first group.
func waitMatch(t *testing.T, f func() string, re string, what string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	testutil.Eventually(t, 60*time.Second, func() bool { m = rx.FindStringSubmatch(f()); return m != nil }, "%s: %s", what, f())
	return m[1]
}

// startRun runs `mqlb run` with the YAML (admin and listener on port 0) and
// returns its admin address.
func startRun(t *testing.T, yaml string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "mqlb.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "run", "-c", file)
	return waitMatch(t, p.stderr.String, `load balancer running.* admin=(\S+)`, "mqlb run serving")
}

// mqttAddr returns the address of the load balancer's first listener.
func mqttAddr(t *testing.T, admin string) string {
	t.Helper()
	var ls struct {
		Listeners []struct{ Name, Address string }
	}
	getJSON(t, "http://"+admin+"/api/v1/listeners", &ls)
	return ls.Listeners[0].Address
}

// upSystem is a running `mqlb up`.
type upSystem struct {
	admin, lb string
	nodes     []string // node admin addresses
}

func startUp(t *testing.T) *upSystem {
	t.Helper()
	p := start(t, "up", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--node-port", "0")
	s := &upSystem{}
	s.admin = waitMatch(t, p.stdout.String, `admin +http://(\S+)/ui/`, "mqlb up started")
	s.lb = waitMatch(t, p.stdout.String, `load balancer +mqtt://(\S+)`, "mqlb up started")
	// The banner is written line by line: read the nodes once its last line is out.
	waitMatch(t, p.stdout.String, `(Ctrl-C) stops everything`, "mqlb up banner")
	for _, m := range regexp.MustCompile(`metrics http://(\S+)/metrics`).FindAllStringSubmatch(p.stdout.String(), -1) {
		s.nodes = append(s.nodes, m[1])
	}
	return s
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// closedByPeer reports whether c was closed from the other side.
func closedByPeer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func stickyConfig(servers ...string) string {
	var b strings.Builder
	b.WriteString("listeners: [{ name: mqtt, address: \"127.0.0.1:0\", upstream: brokers }]\n")
	b.WriteString("upstreams:\n  brokers:\n    balance: sticky\n")
	b.WriteString("    health_check: { type: mqtt, interval: 200ms, timeout: 1s, rise: 1, fall: 2 }\n    servers:\n")
	for i, s := range servers {
		fmt.Fprintf(&b, "      - { name: %c, address: %q }\n", 'a'+i, s)
	}
	b.WriteString("admin: { address: \"127.0.0.1:0\" }\naccess_log: { path: \"off\" }\n")
	return b.String()
}
