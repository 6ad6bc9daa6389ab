// Package testutil holds helpers shared by the project's tests: polling with a
// deadline, real brokers on port 0 (mochi-mqtt in-process, mosquitto as a
// process) and free loopback ports. Nothing here is used outside tests.
package testutil

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// Eventually polls cond every 10ms until it returns true or timeout passes,
// then fails the test with the formatted message. It never sleeps longer than
// needed: the first call happens at once.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if !WaitFor(timeout, cond) {
		t.Fatalf("not true after %v: %s", timeout, fmt.Sprintf(format, args...))
	}
}

// WaitFor polls cond every 10ms until it returns true (true) or timeout passes (false).
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
// Prefer listening on port 0 directly; use this only for external processes
// (mosquitto, haproxy) that must be told a port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// WaitListening waits until a TCP dial to addr succeeds.
func WaitListening(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() bool { return dialOK(addr) }, "nothing listening on %s", addr)
}

func dialOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
