package node

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// retainedAt waits until node n's local store holds payload for topic
// ("" = holds nothing for it).
func retainedAt(t testing.TB, n *Node, topic, payload string) {
	t.Helper()
	testutil.Eventually(t, waitFor, func() bool {
		pk, ok := n.broker.Topics.Retained.Get(topic)
		if payload == "" {
			return !ok
		}
		return ok && string(pk.Payload) == payload
	}, "node %s: retained %q = %q", n.Name(), topic, payload)
}

// retainedFor subscribes a new client on addr to filter and returns the
// retained messages it got. mochi queues them while it handles the
// SUBSCRIBE, after writing the SUBACK; the client then publishes a fence to
// itself, which mochi handles after the SUBSCRIBE, so everything before the
// fence is the retained batch.
func retainedFor(t *testing.T, addr, id, filter, fenceTopic string) []received {
	t.Helper()
	s := dialV5(t, addr, id, true, 0)
	s.sub(t, fenceTopic, 1) // first: mochi refuses a SUBSCRIBE whose packet id one of its own QoS 1 sends uses
	s.sub(t, filter, 1)
	s.send(t, fenceTopic, 0, "fence")
	s.waitPayload(t, "fence")
	var out []received
	for _, m := range s.all() {
		if m.payload == "fence" {
			break
		}
		out = append(out, m)
	}
	return out
}

func TestRetainedClusterWide(t *testing.T) {
	c := shared(t)
	a := dialV3(t, c.addr(0), "ret-a", true)
	a.send(t, "ret/a/x", 1, true, "from A")
	a.send(t, "ret/b/x", 1, true, "from A too")
	retainedAt(t, c.nodes[2], "ret/a/x", "from A")
	retainedAt(t, c.nodes[2], "ret/b/x", "from A too")

	got := retainedFor(t, c.addr(2), "ret-c1", "ret/+/x", "ret/fence")
	var payloads []string
	for _, m := range got {
		if !m.retain {
			t.Errorf("%q delivered without RETAIN to a new subscriber [MQTT-3.3.1-9]", m.payload)
		}
		payloads = append(payloads, m.payload)
	}
	slices.Sort(payloads)
	if !slices.Equal(payloads, []string{"from A", "from A too"}) {
		t.Fatalf("new subscriber on node 3 got retained %q", payloads)
	}

	b := dialV3(t, c.addr(1), "ret-b", true)
	b.send(t, "ret/a/x", 1, true, "") // [MQTT-3.3.1-10]: an empty retained payload clears it
	for _, n := range c.nodes {
		retainedAt(t, n, "ret/a/x", "")
	}
	got = retainedFor(t, c.addr(2), "ret-c2", "ret/+/x", "ret/fence")
	if len(got) != 1 || got[0].payload != "from A too" {
		t.Fatalf("after clearing ret/a/x a new subscriber got %v, want only ret/b/x", got)
	}
	if err := c.nodes[0].store().Retained.Delete(t.Context(), retainedKey("ret/b/x")); err != nil {
		t.Fatal(err)
	}
	retainedAt(t, c.nodes[1], "ret/b/x", "") // the bucket is the truth for every node
}

func TestRetainedLiveCopies(t *testing.T) {
	c := shared(t)
	plain := dialV5(t, c.addr(1), "rap-plain", true, 0)
	plain.sub(t, "rap/t", 1)
	rap := dialV5(t, c.addr(2), "rap-rap", true, 0)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	if _, err := rap.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "rap/t", QoS: 1, RetainAsPublished: true}}}); err != nil {
		t.Fatal(err)
	}
	pub := dialV5(t, c.addr(0), "rap-pub", true, 0)
	pub.pub(t, &paho.Publish{Topic: "rap/t", QoS: 1, Retain: true, Payload: []byte("one")})
	if m := plain.wait(t, 1)[0]; m.retain {
		t.Error("live delivery kept RETAIN for a subscription without Retain As Published [MQTT-3.3.1-12]")
	}
	if m := rap.wait(t, 1)[0]; !m.retain {
		t.Error("live delivery lost RETAIN for a Retain As Published subscription [MQTT-3.3.1-12]")
	}
	for _, n := range c.nodes {
		retainedAt(t, n, "rap/t", "one")
	}
	b := dialV3(t, c.addr(2), "rap-clear", true)
	b.send(t, "rap/t", 1, true, "")
	for _, n := range c.nodes {
		retainedAt(t, n, "rap/t", "")
	}
}

// TestRetainedReadAfterAcknowledgedWrite: a subscriber arriving on another
// node after the PUBACK of a retained overwrite or delete never gets the
// older value (the node's copy follows the bucket asynchronously).
func TestRetainedReadAfterAcknowledgedWrite(t *testing.T) {
	c := shared(t)
	pub := dialV5(t, c.addr(0), "raw-pub", true, 0)
	sub := dialV5(t, c.addr(2), "raw-sub", true, 0)
	sub.sub(t, "raw/fence", 0)
	const trials = 150
	stale := 0
	for i := range trials {
		want := fmt.Sprintf("v%d", i)
		deleted := i%3 == 2
		payload := want
		if deleted {
			payload = ""
		}
		pub.pub(t, &paho.Publish{Topic: "raw/t", QoS: 1, Retain: true, Payload: []byte(payload)})
		before := sub.count()
		sub.sub(t, "raw/t", 1)
		fence := fmt.Sprintf("fence%d", i)
		sub.send(t, "raw/fence", 0, fence) // mochi handles it after the SUBSCRIBE: it follows the retained batch
		var got []string
		testutil.Eventually(t, waitFor, func() bool {
			got = got[:0]
			for _, m := range sub.all()[before:] {
				if m.payload == fence {
					return true
				}
				if m.payload != "" { // the delete itself, still on its way over the mesh
					got = append(got, m.payload)
				}
			}
			return false
		}, "trial %d: fence not received", i)
		if !deleted && len(got) == 0 {
			stale++
			t.Errorf("trial %d: no retained message, want %q", i, want)
			continue
		}
		switch {
		case deleted && len(got) > 0:
			stale++
			t.Errorf("trial %d: after a delete got %q", i, got)
		case !deleted && got[0] != want:
			stale++
			t.Errorf("trial %d: got %q, want %q", i, got[0], want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		_, err := sub.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"raw/t"}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d reads after an acknowledged write returned an older value", stale, trials)
	}
}

// TestRetainedLimit: past mqtt.max_retained_messages a publish that would
// add a retained topic is delivered but not retained (counted as
// retained_limit); replacing and clearing retained messages is always
// taken, and clearing one makes room again. Without the limit a client
// could fill every node's memory and the store's disk with retained topics.
func TestRetainedLimit(t *testing.T) {
	cl, err := startCluster("retainedlimit", 2, func(c *config.Node) { c.MQTT.MaxRetainedMessages = 3 })
	if err != nil {
		t.Fatal(err)
	}
	defer cl.close()
	cl.ready(t)
	live := dialV5(t, cl.addr(1), "rl-live", true, 0)
	live.sub(t, "rl/#", 1)
	pub := dialV5(t, cl.addr(0), "rl-pub", true, 0)
	retain := func(topic, payload string) {
		t.Helper()
		pub.pub(t, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(payload)})
	}
	for _, topic := range []string{"rl/1", "rl/2", "rl/3"} {
		retain(topic, "v")
	}
	for _, n := range cl.nodes {
		retainedAt(t, n, "rl/3", "v")
	}
	retain("rl/4", "over")
	live.waitPayload(t, "over") // delivered
	retain("rl/1", "replaced")
	for _, n := range cl.nodes {
		retainedAt(t, n, "rl/1", "replaced")
		if _, ok := n.broker.Topics.Retained.Get("rl/4"); ok {
			t.Errorf("node %s retained a 4th topic past max_retained_messages 3", n.Name())
		}
	}
	if got := cl.nodes[0].metrics.drops.With("retained_limit").Load(); got != 1 {
		t.Errorf("retained_limit drops: %d, want 1", got)
	}
	retain("rl/2", "") // cleared: room for one more
	for _, n := range cl.nodes {
		retainedAt(t, n, "rl/2", "")
	}
	retain("rl/4", "now")
	for _, n := range cl.nodes {
		retainedAt(t, n, "rl/4", "now")
	}
}
