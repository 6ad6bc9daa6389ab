package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/session"
	"github.com/mqlb/mqlb/internal/testutil"
)

// queuedAt waits until node n holds a disconnected session for id with k
// queued messages.
// With replicated durability the messages are in the session's consumer.
func queuedAt(t *testing.T, n *Node, id string, k int) {
	t.Helper()
	testutil.Eventually(t, waitFor, func() bool {
		cl, ok := n.broker.Clients.Get(id)
		if !ok || !cl.Closed() {
			return false
		}
		if !n.durable.Follows(id) {
			return cl.State.Inflight.Len() == k
		}
		info, err := n.store().Queue.Consumer(t.Context(), session.ConsumerName(id))
		if err != nil {
			return false
		}
		ci, err := info.Info(t.Context())
		if err == nil && int(ci.NumPending)+ci.NumAckPending != k {
			t.Logf("consumer of %s: pending %d, ack pending %d", id, ci.NumPending, ci.NumAckPending)
		}
		return err == nil && int(ci.NumPending)+ci.NumAckPending == k
	}, "node %s: session %s with %d queued messages", n.Name(), id, k)
}

// payloadsOn returns the payloads received on topic, in order.
func payloadsOn(msgs []received, topic string) []string {
	var out []string
	for _, m := range msgs {
		if m.topic == topic {
			out = append(out, m.payload)
		}
	}
	return out
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func TestSessionTakeoverV311(t *testing.T) {
	c := shared(t)
	sub := dialV3(t, c.addr(0), "takeover-v3", false)
	sub.sub(t, "takeover/v3", 1)
	sub.Disconnect(100)
	pub := dialV5(t, c.addr(1), "takeover-pub", true, 0)
	const k = 20
	for _, p := range numbered("m", 0, k) {
		pub.send(t, "takeover/v3", 1, p)
	}
	queuedAt(t, c.nodes[0], "takeover-v3", k)

	again := dialV3(t, c.addr(2), "takeover-v3", false)
	if !again.sessionPresent {
		t.Fatal("CONNACK session present = 0, want 1 [MQTT-3.2.2-2]")
	}
	queuedOnce(t, &again.inbox, pub, "takeover/v3", numbered("m", 0, k))
	if _, ok := c.nodes[0].broker.Clients.Get("takeover-v3"); ok {
		t.Error("the old node still holds the session")
	}
	rec, err := c.nodes[1].sessions.Lookup(t.Context(), "takeover-v3")
	if err != nil || rec == nil || rec.Node != c.nodes[2].Name() || rec.Gone != 0 {
		t.Errorf("registry record %+v (%v): want owned by %s, connected", rec, err, c.nodes[2].Name())
	}
}

func TestSessionTakeoverV5WhileConnected(t *testing.T) {
	c := shared(t)
	first := dialV5(t, c.addr(0), "takeover-v5", true, 300)
	first.sub(t, "takeover/v5", 2)
	second := dialV5(t, c.addr(1), "takeover-v5", false, 300)
	select {
	case d := <-first.disconnect:
		if d.ReasonCode != packets.ErrSessionTakenOver.Code {
			t.Errorf("DISCONNECT reason %#x, want 0x8E session taken over [MQTT-3.1.4-3]", d.ReasonCode)
		}
	case <-time.After(waitFor):
		t.Fatal("first connection got no DISCONNECT")
	}
	if !second.connack.SessionPresent {
		t.Error("CONNACK session present = 0, want 1")
	}
	pub := dialV5(t, c.addr(2), "takeover-v5-pub", true, 0)
	pub.send(t, "takeover/v5", 2, "after")
	second.waitPayload(t, "after")
	if n := first.count(); n != 0 {
		t.Errorf("old connection received %d messages", n)
	}
}

// TestTakeoverResendsOnlyUnacknowledged: a persistent session taken over
// while connected gets on the new node again exactly the deliveries its
// client had not acknowledged (with DUP), then the rest of its queue;
// nothing it acknowledged comes twice. (The node giving the session up
// hands over its exact position; the anchor's floor alone may be up to
// anchorEvery behind.)
func TestTakeoverResendsOnlyUnacknowledged(t *testing.T) {
	c := shared(t)
	if !c.nodes[0].durable.On() {
		t.Skip("sessions.durability memory: mochi's inflight store is handed over")
	}
	first := dialManualAcksSession(t, c.addr(0), "handoff-sub", 10, 300, "handoff/t", true)
	pub := dialV5(t, c.addr(1), "handoff-pub", true, 0)
	for _, p := range numbered("m", 0, 8) {
		pub.send(t, "handoff/t", 1, p)
	}
	testutil.Eventually(t, waitFor, func() bool { return len(first.received()) == 8 }, "8 delivered")
	for _, p := range first.received()[:4] { // QoS 1 acknowledgements go in order [MQTT-4.6.0-2]
		if err := first.Ack(p); err != nil {
			t.Fatal(err)
		}
	}
	unacked := numbered("m", 4, 8)
	testutil.Eventually(t, waitFor, func() bool {
		return len(c.nodes[0].durable.DeliveryIDs(cl0(c.nodes[0], "handoff-sub"))) == len(unacked)
	}, "4 acknowledged")

	second := dialManualAcksSession(t, c.addr(2), "handoff-sub", 10, 300, "", false)
	pub.send(t, "handoff/t", 1, "after")
	want := append(unacked, "after")
	testutil.Eventually(t, waitFor, func() bool { return len(second.received()) >= len(want) }, "%d on the new node", len(want))
	var got []string
	for _, p := range second.received() {
		got = append(got, string(p.Payload))
		if string(p.Payload) != "after" && !p.Duplicate() {
			t.Errorf("%s sent again without DUP [MQTT-3.3.1-1]", p.Payload)
		}
		_ = second.Ack(p)
	}
	if !slices.Equal(got, want) {
		t.Errorf("new node sent %q, want %q (only what was not acknowledged, then the rest)", got, want)
	}
}

func TestCleanStartKicksOtherNode(t *testing.T) {
	c := shared(t)
	first := dialV5(t, c.addr(2), "kick-v5", true, 0)
	first.sub(t, "kick/t", 1)
	second := dialV5(t, c.addr(0), "kick-v5", true, 0)
	select {
	case d := <-first.disconnect:
		if d.ReasonCode != packets.ErrSessionTakenOver.Code {
			t.Errorf("DISCONNECT reason %#x, want 0x8E", d.ReasonCode)
		}
	case <-time.After(waitFor):
		t.Fatal("first connection was not closed: one connection per client id cluster-wide")
	}
	if second.connack.SessionPresent {
		t.Error("clean start: session present = 1, want 0 [MQTT-3.2.2-2]")
	}
	pub := dialV5(t, c.addr(1), "kick-pub", true, 0)
	pub.send(t, "kick/t", 1, "x")
	second.sub(t, "kick/fence", 1)
	pub.send(t, "kick/fence", 1, "fence")
	second.waitPayload(t, "fence")
	if got := payloadsOn(second.all(), "kick/t"); len(got) != 0 {
		t.Errorf("clean start inherited the old subscription: got %q", got)
	}
}

func TestMaxOfflineMessagesDropsOldest(t *testing.T) {
	c := shared(t)
	setMaxOffline(t, c, 5)
	sub := dialV5(t, c.addr(1), "offline-max", true, 600)
	sub.sub(t, "offline/max", 1)
	_ = sub.Disconnect(&paho.Disconnect{})
	before := c.nodes[1].metrics.drops.With("offline_queue_full").Load()
	pub := dialV5(t, c.addr(0), "offline-pub", true, 0)
	for _, p := range numbered("m", 0, 12) {
		pub.send(t, "offline/max", 1, p)
	}
	drops := func() int64 {
		var sum int64
		for _, n := range c.nodes {
			sum += n.metrics.drops.With("offline_queue_full").Load()
		}
		return sum - before
	}
	before = drops()
	durable := c.nodes[1].durable.Follows("offline-max")
	if !durable { // memory drops while offline; the replicated queue when the session comes back
		queuedAt(t, c.nodes[1], "offline-max", 5)
		testutil.Eventually(t, waitFor, func() bool { return drops() == 7 }, "dropped counter +7, have %d", drops())
	} else {
		// What the consumer holds when the client is back is what counts (a
		// message its leader has not applied yet counts as newer).
		queuedAt(t, c.nodes[1], "offline-max", 12)
	}

	again := dialV5(t, c.addr(2), "offline-max", false, 600)
	if !again.connack.SessionPresent {
		t.Fatal("session present = 0")
	}
	queuedOnce(t, &again.inbox, pub, "offline/max", numbered("m", 7, 12))
	if durable {
		testutil.Eventually(t, waitFor, func() bool { return drops() == 7 }, "dropped counter +7, have %d", drops())
	}
}

// queuedOnce checks that a resumed session received exactly the queued
// messages, once each and in order. mochi resends the queue right after the
// CONNACK while new messages already flow, so a live message may overtake
// queued ones: the check ignores the two fences it publishes, the second
// only once the queue and the first fence are in.
func queuedOnce(t *testing.T, in *inbox, pub *v5, topic string, queued []string) {
	t.Helper()
	pub.send(t, topic, 1, "fence1")
	in.waitPayload(t, "fence1")
	in.wait(t, len(queued)+1)
	pub.send(t, topic, 1, "fence2")
	in.waitPayload(t, "fence2")
	got := slices.DeleteFunc(payloadsOn(in.all(), topic), func(p string) bool { return p == "fence1" || p == "fence2" })
	if !slices.Equal(got, queued) {
		t.Fatalf("received %q\nwant the %d queued messages once each, in order", got, len(queued))
	}
}

func setMaxOffline(t *testing.T, c *cluster, n int) {
	for _, node := range c.nodes {
		node.sessions.SetMaxOffline(n)
	}
	t.Cleanup(func() {
		for _, node := range c.nodes {
			node.sessions.SetMaxOffline(node.cfg.Sessions.MaxOfflineMessages)
		}
	})
}

func TestSessionExpiryClusterWide(t *testing.T) {
	c := shared(t)
	sub := dialV5(t, c.addr(0), "expiring", true, 1)
	sub.sub(t, "expiring/t", 1)
	_ = sub.Disconnect(&paho.Disconnect{})
	queue := c.nodes[1].store().Queue
	if queue != nil {
		if _, err := queue.Consumer(t.Context(), session.ConsumerName("expiring")); err != nil {
			t.Fatalf("replicated durability: no consumer for the persistent session: %v", err)
		}
	}
	testutil.Eventually(t, waitFor, func() bool {
		_, held := c.nodes[0].broker.Clients.Get("expiring")
		rec, err := c.nodes[2].sessions.Lookup(t.Context(), "expiring")
		return !held && rec == nil && err == nil
	}, "session expired on its node and in the registry")
	if queue != nil { // its storage is reclaimed
		testutil.Eventually(t, waitFor, func() bool {
			_, err := queue.Consumer(t.Context(), session.ConsumerName("expiring"))
			return errors.Is(err, jetstream.ErrConsumerNotFound)
		}, "consumer of the expired session deleted")
	}
	again := dialV5(t, c.addr(1), "expiring", false, 1)
	if again.connack.SessionPresent {
		t.Error("session present = 1 after the session expired [MQTT-3.1.2-23]")
	}
}

// A SUBSCRIBE acknowledged while the store is down for a moment (here its
// cooldown, which any failed store operation starts: a timed-out write, a
// leader election) reaches the session's registry record once the store
// answers again: the record is what another node restores the session from
// if this one dies.
func TestSubscriptionRecordedAfterStoreFailure(t *testing.T) {
	c := shared(t)
	if !c.nodes[0].durable.On() {
		t.Skip("sessions.durability memory: no registry record of subscriptions")
	}
	cl := dialV5(t, c.addr(0), "subs-rewrite", true, 300)
	defer cl.Disconnect(&paho.Disconnect{})
	c.nodes[0].store().Note(context.DeadlineExceeded) // as a timed-out operation does
	cl.sub(t, "subs/rewrite", 1)
	testutil.Eventually(t, waitFor, func() bool {
		rec, err := c.nodes[1].sessions.Lookup(t.Context(), "subs-rewrite")
		return err == nil && rec != nil && len(rec.Subs) == 1 && rec.Subs[0].Filter == "subs/rewrite"
	}, "the registry record of subs-rewrite never got its subscription")
	pub := dialV5(t, c.addr(2), "subs-rewrite-pub", true, 0)
	defer pub.Disconnect(&paho.Disconnect{})
	pub.send(t, "subs/rewrite", 1, "after the store's failure")
	cl.waitPayload(t, "after the store's failure")
}
