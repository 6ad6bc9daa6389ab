package main

import (
	"fmt"
	"io"
	"net"
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
