//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/procsched"
	"github.com/mqlb/mqlb/internal/testutil"
)

// threadPolicies reads the scheduling policy of every thread of pid
// ("normal", "batch", or another policy's number).
func threadPolicies(t *testing.T, pid int) map[string]string {
	t.Helper()
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	out := map[string]string{}
	for _, d := range dirs {
		tid, _ := strconv.Atoi(filepath.Base(d))
		if p, err := procsched.Of(tid); err == nil { // else the thread ended
			out[filepath.Base(d)] = p
		}
	}
	return out
}

// allUnder reports whether every thread of pid has policy.
func allUnder(t *testing.T, pid int, policy string) (bool, map[string]string) {
	ps := threadPolicies(t, pid)
	for _, p := range ps {
		if p != policy {
			return false, ps
		}
	}
	return true, ps
}

// TestRunSchedulingPolicy: mqlb run puts every thread under SCHED_BATCH by
// default (process.scheduling), the threads it starts while serving too,
// and a reload to "normal" moves them all back.
func TestRunSchedulingPolicy(t *testing.T) {
	b := testutil.StartMochi(t)
	conf := func(extra string) string {
		return fmt.Sprintf("listeners: [{ name: mqtt, address: \"127.0.0.1:0\", upstream: brokers }]\n"+
			"upstreams: { brokers: { servers: [{ name: one, address: %q }] } }\n"+
			"admin: { address: \"\" }\naccess_log: { path: \"off\" }\n%s", b.Addr, extra)
	}
	cfg := writeFile(t, "mqlb.yaml", conf(""))
	p := start(t, "run", "-c", cfg)
	p.logged(t, 10*time.Second, `msg="scheduling policy set" policy=batch`)
	addr := p.logged(t, 10*time.Second, `msg=listening listener=mqtt address=(\S+)`)
	pid := p.cmd.Process.Pid
	for range 20 { // serving starts threads of its own (the relay loops, the poller's)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(connect311)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatalf("CONNACK: %v", err)
		}
		c.Close()
	}
	if ok, ps := allUnder(t, pid, "batch"); !ok {
		t.Fatalf("threads not all SCHED_BATCH: %v", ps)
	}

	if err := os.WriteFile(cfg, []byte(conf("process: { scheduling: normal }\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.logged(t, 10*time.Second, `msg="scheduling policy set" policy=normal`)
	var ps map[string]string
	testutil.Eventually(t, 5*time.Second, func() bool {
		var ok bool
		ok, ps = allUnder(t, pid, "normal")
		return ok
	}, "threads not all SCHED_OTHER after the reload: %v", ps)
}
