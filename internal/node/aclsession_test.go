package node

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// noneOf fails the test if the inbox holds a message with this payload.
func noneOf(t *testing.T, b *inbox, payload string) {
	t.Helper()
	for _, m := range b.all() {
		if m.payload == payload {
			t.Errorf("received %q, which the subscriber's ACL refuses", payload)
		}
	}
}

// TestACLOnDurableDelivery: with replicated durability a persistent
// session's messages go through the session queue, not mochi's delivery;
// a topic its ACL does not let it read must still not reach it, live or
// queued while it was offline, as with mochi's own delivery.
func TestACLOnDurableDelivery(t *testing.T) {
	cl, err := startCluster("acldurable", 2, func(c *config.Node) {
		c.Sessions.Durability = "replicated"
		c.Auth.ACLDefault = "allow"
		c.Auth.ACL = []config.ACLRule{{Allow: false, Access: "subscribe", Topic: "acl/secret"}} // read, not publish
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.close()
	cl.ready(t)
	sub := dialV5(t, cl.addr(0), "acl-sub", false, 3600)
	if code := subCode(t, sub, "acl/#"); code != 1 {
		t.Fatalf("subscribe acl/#: 0x%02x", code)
	}
	pub := dialV5(t, cl.addr(1), "acl-pub", true, 0)
	testutil.Eventually(t, waitFor, func() bool {
		pubCode(t, pub, "acl/probe")
		return sub.count() > 0
	}, "cross-node delivery")
	// In order: once the message after it arrived, so would the refused one have.
	publish := func(topic string) {
		t.Helper()
		if code := pubCode(t, pub, topic); code != 0 {
			t.Fatalf("publish %s: 0x%02x", topic, code)
		}
	}
	publish("acl/secret")
	publish("acl/ok-live")
	sub.waitPayload(t, "acl/ok-live")
	noneOf(t, &sub.inbox, "acl/secret")

	if err := sub.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	publish("acl/secret")
	publish("acl/ok-queued")
	back := dialV5(t, cl.addr(0), "acl-sub", false, 3600)
	back.waitPayload(t, "acl/ok-queued")
	noneOf(t, &back.inbox, "acl/secret")
	// and live, now that the resumed session reads its queue
	publish("acl/secret")
	publish("acl/ok-resumed")
	back.waitPayload(t, "acl/ok-resumed")
	noneOf(t, &back.inbox, "acl/secret")
}

// TestOwnACLForOfflineSession: a client whose rights come from its
// credential store keeps them while its session waits offline. mochi checks
// each message it queues for the offline session; with the rules forgotten
// at the disconnect, only auth.acl and the default (deny) decided, and the
// message was dropped.
func TestOwnACLForOfflineSession(t *testing.T) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"result":"allow","acl":[{"allow":true,"access":"all","topic":"own/%u/#"}]}`)
	}))
	defer svc.Close()
	no := false
	cl, err := startCluster("ownacl", 1, func(c *config.Node) {
		c.Sessions.Durability = "memory"
		c.Mesh.Listen = ""
		c.Auth = config.NodeAuth{AllowAnonymous: &no, ACLDefault: "deny",
			Backends: []config.AuthBackend{{Type: "http", URL: svc.URL}}}
		c.SetDefaults()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.close()
	cl.ready(t)
	creds := withCreds("u1", "pw")
	sub := dialV5(t, cl.addr(0), "own-sub", false, 3600, creds)
	if code := subCode(t, sub, "own/u1/#"); code != 1 {
		t.Fatalf("subscribe own/u1/#: 0x%02x", code)
	}
	if err := sub.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	pub := dialV5(t, cl.addr(0), "own-pub", true, 0, creds)
	if code := pubCode(t, pub, "own/u1/queued"); code != 0 {
		t.Fatalf("publish: 0x%02x", code)
	}
	back := dialV5(t, cl.addr(0), "own-sub", false, 3600, creds)
	back.waitPayload(t, "own/u1/queued")

	// The rules of the session that was taken over by the resume go with
	// the next sweep; the live connections' stay.
	n := cl.nodes[0]
	held := func(c *mqtt.Client) bool {
		cur, ok := n.broker.Clients.Get(c.ID)
		return ok && cur == c
	}
	count := func() (k int) {
		n.auth.Forget(held, 0)
		for _, id := range []string{"own-sub", "own-pub"} {
			if c, ok := n.broker.Clients.Get(id); ok && n.auth.OnACLCheck(c, "own/u1/x", false) {
				k++
			}
		}
		return k
	}
	if k := count(); k != 2 {
		t.Fatalf("after the sweep %d of 2 live clients keep their rules", k)
	}
	if k := n.auth.Held(); k != 2 {
		t.Fatalf("own rules kept for %d clients, want 2 (the live ones')", k)
	}
}
