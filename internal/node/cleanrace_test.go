package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/testutil"
)

// dialCleanV5 connects a clean-session v5 client (session expiry 0) and returns it
// with its TCP connection, so the test can drop the connection without a
// DISCONNECT.
func dialCleanV5(t testing.TB, addr, id string) (*v5, net.Conn) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &v5{disconnect: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.add(received{topic: pr.Packet.Topic, payload: string(pr.Packet.Payload)})
			return true, nil
		}},
		OnClientError: func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		conn.Close()
		t.Fatalf("connect %s: %v", id, err)
	}
	return c, conn
}

// A clean-session client that reconnects at once with the same id must keep
// what it subscribes to on the new connection: mochi's cleanup of the old
// connection (UnsubscribeClient, Clients.Delete by client id) must not run
// after the new connection registered.
func TestCleanSessionReconnectKeepsSubscriptions(t *testing.T) {
	c := shared(t)
	addr := c.addr(0)
	pub := dialV5(t, addr, "cleanrace-pub", true, 0)
	rounds := 200
	if s := os.Getenv("MQLB_CLEANRACE_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	const id = "cleanrace"
	topicName := "cleanrace/" + id
	old, oldConn := dialCleanV5(t, addr, id)
	old.sub(t, topicName, 0)
	lost := 0
	for i := range rounds {
		if i%2 == 0 {
			_ = old.Disconnect(&paho.Disconnect{})
		} else {
			oldConn.Close() // no DISCONNECT: the node notices the closed connection
		}
		cur, conn := dialCleanV5(t, addr, id)
		cur.sub(t, topicName, 0)
		payload := fmt.Sprint(i)
		got := func() bool {
			for _, m := range cur.all() {
				if m.payload == payload {
					return true
				}
			}
			return false
		}
		// QoS 0 may be lost only if the client is not subscribed: resend
		// until it arrives or the deadline passes.
		if !testutil.WaitFor(2*time.Second, func() bool { pub.send(t, topicName, 0, payload); return got() }) {
			lost++
			_, inClients := c.nodes[0].broker.Clients.Get(id)
			subs := c.nodes[0].broker.Topics.Subscribers(topicName)
			t.Logf("round %d: client id in mochi Clients: %v; topic subscribers: %v", i, inClients, subs.Subscriptions)
			t.Errorf("round %d: the reconnected client subscribed (SUBACK) but receives nothing", i)
		}
		old, oldConn = cur, conn
	}
	_ = old.Disconnect(&paho.Disconnect{})
	t.Logf("%d rounds, %d lost", rounds, lost)
}
