package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// closeOnConnect is a broker that reads the client's CONNECT and closes
// without a CONNACK, as mosquitto does on a string it will not take.
func closeOnConnect(t *testing.T) string {
	return testutil.Serve(t, func(c net.Conn) {
		go func() {
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			mqttwire.ReadConnect(c, nil, 0)
		}()
	})
}

// TestCloseOnConnectBlame: a server that closes on the client's CONNECT
// before any CONNACK is charged a passive failure only once another server
// answered the same CONNECT. When every server tried closed on it, the
// CONNECT is the likely cause: nobody is charged (with fall 1 any client
// could otherwise take every server down), and the client is refused.
func TestCloseOnConnectBlame(t *testing.T) {
	a, b, c := closeOnConnect(t), closeOnConnect(t), closeOnConnect(t)
	servers := "      - { name: a, address: \"" + a + "\" }\n      - { name: b, address: \"" + b + "\" }\n" +
		"      - { name: c, address: \"" + c + "\" }\n"
	set, err := Build(parse(t, servers, "    connect_retries: 2\n    health_check: { type: none, fall: 1, interval: 1m }\n"), nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	u := set.Get("u")
	var l Lease
	_, _, err = u.Connect(context.Background(), &l, connectOf("bad"))
	if !errors.Is(err, ErrNoServer) || !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Connect: %v; want no server, every attempt closed", err)
	}
	for _, s := range u.Servers {
		if s.Failures() != 0 || !s.Healthy() {
			t.Errorf("%s: failures %d healthy %v after closing on a CONNECT every server closed on; want 0, true",
				s.Name(), s.Failures(), s.Healthy())
		}
	}

	// One that closes and one that answers: the close is the server's.
	live := testutil.StartMochi(t).Addr
	servers = "      - { name: closer, address: \"" + a + "\" }\n      - { name: live, address: \"" + live + "\" }\n"
	set, err = Build(parse(t, servers, "    balance: round_robin\n    connect_retries: 1\n    health_check: { type: none, fall: 1, interval: 1m }\n"), nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	u = set.Get("u")
	for i := range 2 { // round robin: the closer is tried first once
		var l Lease
		conn, _, err := u.Connect(context.Background(), &l, connectOf("good"+string(rune('0'+i))))
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		conn.Close()
		l.Release(0, 0)
	}
	if cl := u.Server("closer"); cl.Failures() != 1 || cl.Healthy() {
		t.Errorf("closer: failures %d healthy %v after another server answered the CONNECT it closed on; want 1, false (fall 1)",
			cl.Failures(), cl.Healthy())
	}
}
