package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// connect311 is a minimal MQTT 3.1.1 CONNECT, client id "c".
var connect311 = []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'c'}

// TestSecondSignalStopsAtOnce is issue 11 item 10: SIGTERM starts a graceful
// stop that waits up to limits.shutdown_grace (here 60 s) for an open
// connection; a second SIGTERM ends the process at once.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	b := testutil.StartMochi(t)
	cfg := writeFile(t, "mqlb.yaml", fmt.Sprintf("listeners: [{ name: mqtt, address: \"127.0.0.1:0\", upstream: brokers }]\n"+
		"upstreams: { brokers: { servers: [{ name: one, address: %q }] } }\n"+
		"limits: { shutdown_grace: 60s }\nadmin: { address: \"\" }\naccess_log: { path: \"off\" }\n", b.Addr))
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := start(t, "run", "-c", cfg)
			addr := p.logged(t, 10*time.Second, `msg=listening listener=mqtt address=(\S+)`)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(connect311)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
				t.Fatalf("CONNACK: %v", err)
			}
			p.cmd.Process.Signal(sig)
			p.logged(t, 10*time.Second, `shutting down: waiting for open connections" connections=1`)
			p.cmd.Process.Signal(sig)
			began := time.Now()
			if code := p.exited(t, 10*time.Second); code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			t.Logf("stopped %v after the second signal", time.Since(began))
			p.logged(t, time.Second, `second \S+ during shutdown: stopping now`)
		})
	}
}

// upDataDir returns the data directory `mqlb up` printed in its banner.
func upDataDir(t *testing.T, p *proc) string {
	t.Helper()
	return waitMatch(t, p.stdout.String, `(?m)^  data +(\S+) \(temporary\)$`, "mqlb up banner")
}

// TestUpStopsOnHangup: SIGHUP (what closing the terminal sends) stops
// `mqlb up` as Ctrl-C does, and its temporary data directory goes with it.
// Go's default action for SIGHUP ended the process at once and left the
// directory behind. A second hangup (the shell passes its terminal's on to
// its jobs) does not cut the stop short.
func TestUpStopsOnHangup(t *testing.T) {
	p := start(t, "up", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--node-port", "0")
	dir := upDataDir(t, p)
	lb := waitMatch(t, p.stdout.String, `load balancer +mqtt://(\S+)`, "mqlb up banner")
	waitMatch(t, p.stdout.String, `(Ctrl-C) stops everything`, "mqlb up banner")
	testutil.ConnectRaw(t, lb, "held-open") // the load balancer waits up to 5 s for it
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.logged(t, 10*time.Second, `mqlb up: hangup: stopping`)
	p.cmd.Process.Signal(syscall.SIGHUP)
	if code := p.exited(t, 60*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0:\n%s", code, p.stderr)
	}
	p.logged(t, time.Second, `mqlb up: stopped`)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary data directory %s left behind: %v", dir, err)
	}
}

// TestUpSecondSignalRemovesDataDir: a second Ctrl-C during mqlb up's
// shutdown (held by an open connection) ends the process at once, and
// still removes its temporary data directory.
func TestUpSecondSignalRemovesDataDir(t *testing.T) {
	p := start(t, "up", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--node-port", "0")
	dir := upDataDir(t, p)
	lb := waitMatch(t, p.stdout.String, `load balancer +mqtt://(\S+)`, "mqlb up banner")
	waitMatch(t, p.stdout.String, `(Ctrl-C) stops everything`, "mqlb up banner")
	testutil.ConnectRaw(t, lb, "held-open") // the load balancer waits up to 5 s for it
	p.cmd.Process.Signal(syscall.SIGINT)
	p.logged(t, 10*time.Second, `mqlb up: .*stopping \(open connections`)
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exited(t, 10*time.Second); code != 1 {
		t.Errorf("exit status %d, want 1:\n%s", code, p.stderr)
	}
	p.logged(t, time.Second, `second interrupt during shutdown: stopping now`)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary data directory %s left behind: %v", dir, err)
	}
}

// TestNodeHangupDuringStart: a SIGHUP that comes while a node starts (a
// config management tool reloading every node it just started) is applied
// once the node runs. Before, the node took SIGHUP only after its start,
// and Go's default action for it ended the process.
func TestNodeHangupDuringStart(t *testing.T) {
	cfg := writeFile(t, "node.yaml", fmt.Sprintf("node: { name: h1, data_dir: %q }\n", t.TempDir())+
		"listeners: [{ name: tcp, address: \"127.0.0.1:0\" }]\n"+
		"mesh: { listen: \"127.0.0.1:0\" }\nadmin: { address: \"127.0.0.1:0\" }\n")
	p := start(t, "node", "-c", cfg)
	p.logged(t, 10*time.Second, `msg="starting node"`)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.logged(t, 30*time.Second, `msg="node started"`)
	p.logged(t, 10*time.Second, `msg="SIGHUP: config reloaded"`)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exited(t, 30*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}
