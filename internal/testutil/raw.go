package testutil

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// ConnectRaw opens an MQTT 3.1.1 connection to addr as id and waits for a
// CONNACK 0; the connection closes when the test ends.
func ConnectRaw(t testing.TB, addr, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: id, KeepAlive: 300}))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rp, err := mqttwire.ReadConnack(c, 4, nil); err != nil || rp.Code != 0 {
		t.Fatalf("%s: connack %d %v", id, rp.Code, err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}

// Serve listens on a loopback port and calls handle with each accepted
// connection (in the accepting goroutine: handle starts its own when it
// blocks) until the test ends; it returns the address.
func Serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
	return ln.Addr().String()
}

// SmallWindow is a net.Dialer Control that gives the socket a receive
// buffer of a few KiB before it connects, so the window it announces stays
// that small: what is written to it and not read stays with the writer
// (a client that stops reading).
func SmallWindow(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	}); err != nil {
		return err
	}
	return serr
}
