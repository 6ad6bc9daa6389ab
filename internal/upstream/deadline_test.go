package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

type ctxKey struct{}

func TestUntil(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	d := time.Now().Add(time.Hour)
	ctx := Until(parent, d)
	if got, ok := ctx.Deadline(); !ok || !got.Equal(d) {
		t.Errorf("Deadline %v %v, want %v", got, ok, d)
	}
	if ctx.Err() != nil || ctx.Value(ctxKey{}) != "v" || ctx.Done() != parent.Done() {
		t.Errorf("before the deadline: Err %v, Value %v, Done parent's %v", ctx.Err(), ctx.Value(ctxKey{}), ctx.Done() == parent.Done())
	}
	if err := Until(parent, time.Now().Add(-time.Millisecond)).Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("past the deadline: Err %v, want DeadlineExceeded", err)
	}
	cancel()
	select {
	case <-ctx.Done():
	default:
		t.Fatal("Done not closed when the parent is canceled")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("after cancel: Err %v, want Canceled", ctx.Err())
	}
}

// A Until context's Done is not closed at its deadline: Connect must still
// give up by then (socket deadlines), and at once when the parent ends.
func TestConnectHonoursUntil(t *testing.T) {
	mute := testutil.Serve(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers the CONNECT
	c := parse(t, "      - { name: mute, address: \""+mute+"\" }\n",
		"    connack_timeout: 30s\n    dial_timeout: 30s\n    health_check: { type: none }\n")
	set, err := Build(c, nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	u := set.Get("u")
	if !u.Server("mute").ip {
		t.Fatal("an IP address not recognised as one")
	}
	hs := &Handshake{Version: mqttwire.V311,
		Data: mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: "c", CleanStart: true})}
	start := time.Now()
	var l Lease
	if _, _, err := u.Connect(Until(context.Background(), start.Add(200*time.Millisecond)), &l, hs); err == nil {
		t.Fatal("Connect succeeded without a CONNACK")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Connect took %v with a 200ms deadline", took)
	}
	parent, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	if _, _, err := u.Connect(Until(parent, start.Add(time.Hour)), &l, hs); err == nil {
		t.Fatal("Connect succeeded with its context canceled")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Connect took %v with its context canceled", took)
	}
}

func TestServerAddressedByIP(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:1883": true, "[::1]:1883": true, "broker:1883": false, "localhost:1883": false} {
		if got := newServer("u", "s", addr, 1, slog.New(slog.DiscardHandler)).ip; got != want {
			t.Errorf("server %q: ip = %v, want %v", addr, got, want)
		}
	}
}

// A dial that does not complete (a listener whose accept queue is full
// drops SYNs) ends at the dial timeout on the Until path too.
func TestDialTimeoutThroughUntil(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // never accepted: the queue fills
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 4 { // fill the accept queue; then a connect stays in progress
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		defer c.Close()
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Skip("this kernel completes connects to a full accept queue")
	}
	c := parse(t, "      - { name: full, address: \""+addr+"\" }\n",
		"    connack_timeout: 30s\n    dial_timeout: 300ms\n    health_check: { type: none }\n")
	set, err := Build(c, nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	u := set.Get("u")
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, loop := range []bool{false, true} { // net.Dialer, relay.Dial
		hs := &Handshake{Version: mqttwire.V311, Loop: loop,
			Data: mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: "c", CleanStart: true})}
		start := time.Now()
		var l Lease
		if conn, _, err := u.Connect(Until(parent, start.Add(time.Hour)), &l, hs); err == nil {
			conn.Close()
			t.Fatalf("loop %v: Connect succeeded to a server that never accepts", loop)
		} else if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("loop %v: %v, want the dial timeout", loop, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("loop %v: Connect took %v with a 300ms dial timeout", loop, took)
		}
	}
}
