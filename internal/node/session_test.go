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

// anchorReady waits until the anchor of id's session queue (a JetStream
// consumer, its state in memory on each replica: see session.Durable.write)
// answers on node n. After nodes restart the anchor has no leader until its
// replicas elect one; a replica back with an empty log counts in that
// election only once every replica answers, so it takes JetStream one or
// more election timeouts (4-9 s each; over 10 s under load). Until then the
// node cannot read the session's queue: a message's deadline (waitFor)
// starts once it can.
func anchorReady(t *testing.T, n *Node, id string) {
	t.Helper()
	if !n.durable.On() {
		return
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		st := n.store()
		if st == nil || st.Queue == nil {
			return false
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := st.Queue.Consumer(ctx, session.ConsumerName(id))
		return err == nil
	}, "node %s: anchor of session %s answers", n.Name(), id)
}

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

// ackedAt waits until node n has every queue delivery to id's connected
// client acknowledged. A client that disconnects as soon as it has a
// message may have its PUBACK cut off by the DISCONNECT; the message then
// stays queued for the session (at least once), and a count of what is
// queued after it includes it.
func ackedAt(t *testing.T, n *Node, id string) {
	t.Helper()
	testutil.Eventually(t, waitFor, func() bool {
		cl, ok := n.broker.Clients.Get(id)
		return ok && len(n.durable.DeliveryIDs(cl)) == 0
	}, "node %s: every delivery to %s acknowledged", n.Name(), id)
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

// TestCleanSessionTakenOverNotResumed: a 3.1.1 clean session is never
// reused [MQTT-3.1.2-6]: a connection of its id with clean session 0 on
// another node closes it and starts a new session (session present 0,
// its subscription gone), as on one node.
func TestCleanSessionTakenOverNotResumed(t *testing.T) {
	c := shared(t)
	first := dialV3(t, c.addr(0), "takeover-clean", true)
	first.sub(t, "takeover/clean", 1)
	second := dialV3(t, c.addr(1), "takeover-clean", false)
	if second.sessionPresent {
		t.Error("CONNACK session present = 1 for a clean session taken over, want 0")
	}
	testutil.Eventually(t, waitFor, func() bool { return !first.IsConnectionOpen() }, "the clean connection is still open")
	pub := dialV5(t, c.addr(2), "takeover-clean-pub", true, 0)
	pub.send(t, "takeover/clean", 1, "not yours")
	probe := dialV3(t, c.addr(1), "takeover-clean-probe", true)
	probe.sub(t, "takeover/clean", 1)
	pub.send(t, "takeover/clean", 1, "probe")
	probe.waitPayload(t, "probe")
	if n := second.count(); n != 0 {
		t.Errorf("the new session got %d messages of the clean session's subscription", n)
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

// TestMaxOfflineMessagesDropsOldest: an offline session over
// max_offline_messages keeps the newest, in order, and the oldest are
// counted as dropped. With replicated durability the session's queue holds
// all of them while it is offline, and what is over the limit is dropped
// when the session comes back; in memory the node drops them as they come.
func TestMaxOfflineMessagesDropsOldest(t *testing.T) {
	c := shared(t)
	setMaxOffline(t, c, 5)
	drops := dropCounter(c, "offline_queue_full") // from here on, on every node
	sub := dialV5(t, c.addr(1), "offline-max", true, 600)
	sub.sub(t, "offline/max", 1)
	durable := c.nodes[1].durable.On()
	if durable {
		// Set up by the SUBSCRIBE, unless the registry could not record the
		// session when it connected: then it lives on this node only, and
		// the other node cannot resume it.
		testutil.Eventually(t, waitFor, func() bool { return c.nodes[1].durable.Follows("offline-max") },
			"node %s does not follow the queue of offline-max (registry unavailable when it connected?)", c.nodes[1].Name())
	}
	_ = sub.Disconnect(&paho.Disconnect{})
	pub := dialV5(t, c.addr(0), "offline-pub", true, 0)
	for _, p := range numbered("m", 0, 12) {
		pub.send(t, "offline/max", 1, p)
	}
	if !durable { // memory drops while offline
		queuedAt(t, c.nodes[1], "offline-max", 5)
		drops.await(t, 7)
	} else {
		// The replicated queue drops when the session comes back: what the
		// consumer holds then is what counts (a message its leader has not
		// applied yet counts as newer), so all 12 must be in it first.
		queuedAt(t, c.nodes[1], "offline-max", 12)
		if n, per := drops.count(); n != 0 {
			t.Fatalf("%d dropped (per node %v) while the durable session was offline, want none before it resumes", n, per)
		}
	}

	again := dialV5(t, c.addr(2), "offline-max", false, 600)
	if !again.connack.SessionPresent {
		t.Fatal("session present = 0")
	}
	queuedOnce(t, &again.inbox, pub, "offline/max", numbered("m", 7, 12))
	drops.await(t, 7)
}

// drops counts the messages the nodes of a cluster dropped for one reason
// since dropCounter.
type drops struct {
	c      *cluster
	reason string
	base   []int64
}

func dropCounter(c *cluster, reason string) *drops {
	d := &drops{c: c, reason: reason}
	d.base = d.now()
	return d
}

func (d *drops) now() []int64 {
	out := make([]int64, len(d.c.nodes))
	for i, n := range d.c.nodes {
		out[i] = n.metrics.drops.With(d.reason).Load()
	}
	return out
}

// count returns the drops since dropCounter: in all, and per node.
func (d *drops) count() (int64, []int64) {
	var sum int64
	per := d.now()
	for i := range per {
		per[i] -= d.base[i]
		sum += per[i]
	}
	return sum, per
}

// await waits until exactly want were dropped since dropCounter.
func (d *drops) await(t testing.TB, want int64) {
	t.Helper()
	var n int64
	var per []int64
	if !testutil.WaitFor(waitFor, func() bool { n, per = d.count(); return n == want }) {
		t.Fatalf("%s drops: %d (per node %v) after %v, want %d", d.reason, n, per, waitFor, want)
	}
}

// queuedOnce checks that a resumed session received exactly the queued
// messages, once each and in order. mochi resends the queue right after the
// CONNACK while new messages already flow, so a live message may overtake
// queued ones: the check ignores the two fences it publishes, the second
// only once the queue and the first fence are in.
func queuedOnce(t *testing.T, in *inbox, pub *v5, topic string, queued []string) {
	t.Helper()
	got := func() []string { return payloadsOn(in.all(), topic) }
	until := func(what string, cond func() bool) {
		t.Helper()
		if !testutil.WaitFor(waitFor, cond) {
			t.Fatalf("%s not received after %v: have %q\nwant the %d queued messages %q once each, in order, and the fences",
				what, waitFor, got(), len(queued), queued)
		}
	}
	pub.send(t, topic, 1, "fence1")
	until("fence1", func() bool { return slices.Contains(got(), "fence1") })
	until(fmt.Sprintf("%d messages", len(queued)+1), func() bool { return len(got()) >= len(queued)+1 })
	pub.send(t, topic, 1, "fence2")
	until("fence2", func() bool { return slices.Contains(got(), "fence2") })
	msgs := slices.DeleteFunc(got(), func(p string) bool { return p == "fence1" || p == "fence2" })
	if !slices.Equal(msgs, queued) {
		t.Fatalf("received %q\nwant the %d queued messages %q once each, in order", msgs, len(queued), queued)
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
