// Package testutil holds helpers shared by the project's tests: polling with a
// deadline, real brokers on port 0 (mochi-mqtt in-process, mosquitto as a
// process), a dead server address, raw TCP and HTTP round trips. Nothing here
// is used outside tests.
package testutil

import (
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// RefusingAddr returns a loopback address where nothing listens and that
// nothing else can take while the test runs: a socket bound to a port but
// not listening, so a dial gets "connection refused". It is the dead server
// of a test, without the race of a port that was free a moment ago.
func RefusingAddr(t testing.TB) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for external programs that cannot bind port 0 and report it
// (mosquitto): their start is retried when the port was taken meanwhile.
func freeAddr(t testing.TB) string {
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
