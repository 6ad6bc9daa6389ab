package auth

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqttv3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqlb/mqlb/internal/testutil"
)

// Reason codes mochi sends for an ACL refusal.
const (
	v5NotAuthorized  = 0x87 // SUBACK, PUBACK (v5)
	v3SubackFailure  = 0x80 // SUBACK (v3.1.1)
	grantedQoS1      = 0x01
	pubackSuccessful = 0x00
)

var deviceRules = Options{ACL: []Rule{
	{Allow: true, Access: AccessAll, Topic: "sensors/%c/#"},
	{Allow: true, Access: AccessSubscribe, Topic: "public/#"},
}}

func TestACLSubscribeAndPublishV5(t *testing.T) {
	_, addrs := startBroker(t, mustNew(t, Options{AllowAnonymous: true, ACL: deviceRules.ACL}))
	c := mustV5(t, addrs["tcp"], paho.Connect{ClientID: "me"})
	subs := map[string]byte{
		"sensors/me/+":          grantedQoS1,
		"sensors/me/#":          grantedQoS1,
		"sensors/#":             v5NotAuthorized, // wider than the rule
		"sensors/other/+":       v5NotAuthorized,
		"$share/g/sensors/me/+": grantedQoS1, // checked by its inner filter
		"$share/g/sensors/#":    v5NotAuthorized,
		"public/news":           grantedQoS1,
		"#":                     v5NotAuthorized,
	}
	for filter, want := range subs {
		if got := c.subscribe(t, filter); got != want {
			t.Errorf("SUBACK for %q = %#x, want %#x", filter, got, want)
		}
	}
	if got := c.publish1(t, "sensors/me/temp"); got != pubackSuccessful {
		t.Errorf("PUBACK for own topic = %#x, want success", got)
	}
	if got := c.publish1(t, "sensors/other/temp"); got != v5NotAuthorized {
		t.Errorf("PUBACK for another client's topic = %#x, want %#x", got, v5NotAuthorized)
	}
	if got := c.publish1(t, "public/news"); got != v5NotAuthorized {
		t.Errorf("PUBACK for a subscribe-only topic = %#x, want %#x", got, v5NotAuthorized)
	}
	// The allowed publish came back through the sensors/me/+ subscription.
	if m := c.next(t); m.Topic != "sensors/me/temp" {
		t.Errorf("received %q, want sensors/me/temp", m.Topic)
	}
}

func TestACLClientIDCannotEscape(t *testing.T) {
	_, addrs := startBroker(t, mustNew(t, Options{AllowAnonymous: true, ACL: deviceRules.ACL}))
	for id, filter := range map[string]string{"+": "sensors/+/#", "#": "sensors/#"} {
		c := mustV5(t, addrs["tcp"], paho.Connect{ClientID: id})
		if got := c.subscribe(t, filter); got != v5NotAuthorized {
			t.Errorf("client id %q subscribing %q: SUBACK %#x, want %#x", id, filter, got, v5NotAuthorized)
		}
		if got := c.publish1(t, "sensors/x/y"); got != v5NotAuthorized {
			t.Errorf("client id %q publishing sensors/x/y: PUBACK %#x, want %#x", id, got, v5NotAuthorized)
		}
	}
}

func TestACLV311(t *testing.T) {
	_, addrs := startBroker(t, mustNew(t, Options{AllowAnonymous: true, ACL: deviceRules.ACL}))
	c, _ := connectV311(t, addrs["tcp"], "me3", "", "")
	for filter, want := range map[string]byte{"sensors/me3/#": grantedQoS1, "sensors/#": v3SubackFailure} {
		tok := c.Subscribe(filter, 1, nil)
		if !tok.WaitTimeout(5 * time.Second) {
			t.Fatalf("subscribe %q: no SUBACK", filter)
		}
		if got := tok.(*mqttv3.SubscribeToken).Result()[filter]; got != want {
			t.Errorf("v3.1.1 SUBACK for %q = %#x, want %#x", filter, got, want)
		}
	}
	// v3.1.1 has no negative PUBACK: mochi disconnects the client.
	c.Publish("sensors/other/x", 1, false, "x")
	testutil.Eventually(t, 5*time.Second, func() bool { return !c.IsConnectionOpen() },
		"v3.1.1 client still connected after a refused QoS 1 publish")
}

// A deny rule narrower than an allowed subscription still holds: mochi asks
// the hook again before delivering each message.
func TestNarrowDenyAppliesAtDelivery(t *testing.T) {
	h := mustNew(t, Options{AllowAnonymous: true, ACLDefault: true, ACL: []Rule{
		{Allow: false, Access: AccessSubscribe, Topic: "secret/#"},
	}})
	_, addrs := startBroker(t, h)
	sub := mustV5(t, addrs["tcp"], paho.Connect{ClientID: "sub"})
	if got := sub.subscribe(t, "#"); got != grantedQoS1 {
		t.Fatalf("SUBACK for # = %#x, want granted", got)
	}
	pub := mustV5(t, addrs["tcp"], paho.Connect{ClientID: "pub"})
	pub.publish1(t, "secret/plans")
	pub.publish1(t, "public/news")
	if m := sub.next(t); m.Topic != "public/news" {
		t.Errorf("first message delivered: %q, want public/news (secret/plans must not be delivered)", m.Topic)
	}
}

// A will message the client could not publish itself is dropped.
func TestWillNeedsPublishAccess(t *testing.T) {
	h := mustNew(t, Options{AllowAnonymous: true, ACL: []Rule{
		{Allow: true, Access: AccessPublish, Topic: "status/%c"},
		{Allow: true, Access: AccessSubscribe, Topic: "#"},
	}})
	srv, addrs := startBroker(t, h)
	sub := mustV5(t, addrs["tcp"], paho.Connect{ClientID: "watcher"})
	sub.subscribe(t, "#")

	withWill := func(id, topic string) *v5 {
		return mustV5(t, addrs["tcp"], paho.Connect{ClientID: id,
			WillMessage: &paho.WillMessage{Topic: topic, Payload: []byte("gone"), QoS: 1}})
	}
	forger, honest := withWill("forger", "status/victim"), withWill("honest", "status/honest")
	dropConn(t, forger.conn)
	testutil.Eventually(t, 5*time.Second, func() bool {
		cl, ok := srv.Clients.Get("forger")
		return !ok || cl.Closed()
	}, "broker did not notice the forger's connection drop")
	dropConn(t, honest.conn)
	if m := sub.next(t); m.Topic != "status/honest" {
		t.Errorf("first will delivered on %q, want status/honest (the forged will must be dropped)", m.Topic)
	}
}

// dropConn closes a client's connection without DISCONNECT, so the broker
// publishes its will.
func dropConn(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// mochi checks the ACL before resolving a topic alias, so the hook checks
// aliased publishes again in OnPublish.
func TestACLTopicAlias(t *testing.T) {
	h := mustNew(t, Options{AllowAnonymous: true, ACL: deviceRules.ACL})
	_, addrs := startBroker(t, h)
	c := mustV5(t, addrs["tcp"], paho.Connect{ClientID: "al"})
	alias := uint16(1)
	pub := func(topic string) byte {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x"),
			Properties: &paho.PublishProperties{TopicAlias: &alias}})
		if pr == nil {
			t.Fatalf("publish %q via alias: no PUBACK: %v", topic, err)
		}
		return pr.ReasonCode
	}
	if got := pub("sensors/al/t"); got != pubackSuccessful {
		t.Fatalf("setting the alias: PUBACK %#x", got)
	}
	if got := pub(""); got != pubackSuccessful {
		t.Errorf("alias-only publish to an allowed topic: PUBACK %#x, want success", got)
	}
	if err := h.Reload(Options{AllowAnonymous: true}); err != nil { // no rules, default deny
		t.Fatal(err)
	}
	if got := pub(""); got != v5NotAuthorized {
		t.Errorf("alias-only publish after the rule was revoked: PUBACK %#x, want %#x", got, v5NotAuthorized)
	}
}
