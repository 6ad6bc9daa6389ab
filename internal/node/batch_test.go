package node

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqlb/mqlb/internal/testutil"
)

// Publishes to one topic arriving while the queue stream stores an earlier
// one go into one stream message (session/batch.go); each is then read,
// delivered, acknowledged and handed over as a publish of its own.

// fire sends n publishes "<prefix><i>" to topic without waiting between
// them (so that they reach the node together), then waits for every
// acknowledgement.
func fire(t *testing.T, c *v3, topic string, qos byte, prefix string, n int) {
	t.Helper()
	toks := make([]mqtt3.Token, n)
	for i := range n {
		toks[i] = c.Publish(topic, qos, false, prefix+strconv.Itoa(i))
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
			t.Errorf("publish %s%d: %v", prefix, i, tok.Error())
			return
		}
	}
}

func storedDelta(c *cluster) func() (publishes, messages int64) {
	base := func() (p, m int64) {
		for _, n := range c.nodes {
			np, nm := n.durable.Stored()
			p, m = p+np, m+nm
		}
		return p, m
	}
	p0, m0 := base()
	return func() (int64, int64) {
		p, m := base()
		return p - p0, m - m0
	}
}

// orderPerPublisher checks that the first copy of each publisher's
// messages arrived in the order they were sent, and counts the copies
// after the first.
func orderPerPublisher(t *testing.T, who string, payloads []string) (dups int) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int{}
	for _, p := range payloads {
		if seen[p] {
			dups++
			continue
		}
		seen[p] = true
		pub, num, _ := strings.Cut(p, "-")
		i, _ := strconv.Atoi(num)
		if prev, ok := last[pub]; ok && i != prev+1 {
			t.Errorf("%s: %s after %s-%d", who, p, pub, prev)
		}
		last[pub] = i
	}
	return dups
}

func TestQueueBatchesInOrderAcrossTakeover(t *testing.T) {
	c := shared(t)
	if !c.nodes[0].durable.On() {
		t.Fatal("the shared cluster should have replicated sessions")
	}
	const topic, pubs, each = "batch/order", 4, 300
	// One delivery at a time (Receive Maximum 1): the session is still
	// being delivered, inside a batch, when it moves.
	one := func(cp *paho.Connect) { rm := uint16(1); cp.Properties.ReceiveMaximum = &rm }
	q1 := dialV5(t, c.addr(1), "batch-q1", true, 600, one)
	q1.sub(t, topic, 1)
	q2 := dialV5(t, c.addr(2), "batch-q2", true, 600)
	q2.sub(t, topic, 2)
	testutil.Eventually(t, waitFor, func() bool {
		return c.nodes[1].durable.Follows("batch-q1") && c.nodes[2].durable.Follows("batch-q2")
	}, "durable sessions not set up")
	stored := storedDelta(c)

	var wg sync.WaitGroup
	for k := range pubs {
		p := dialV3(t, c.addr(0), fmt.Sprintf("batch-pub%d", k), true)
		wg.Go(func() { fire(t, p, topic, byte(k%2+1), fmt.Sprintf("p%d-", k), each) })
	}
	// The QoS 1 session moves to node 0 mid-stream: its position, inside
	// a batch or not, is handed over.
	q1.wait(t, 200)
	q1b := dialV5(t, c.addr(0), "batch-q1", false, 600, one)
	if !q1b.connack.SessionPresent {
		t.Fatal("takeover: session present 0")
	}
	wg.Wait()

	total := pubs * each
	distinct := func(in *inbox, also *inbox) int {
		seen := map[string]bool{}
		for _, m := range append(in.all(), also.all()...) {
			seen[m.payload] = true
		}
		return len(seen)
	}
	testutil.Eventually(t, waitFor, func() bool { return distinct(&q1.inbox, &q1b.inbox) == total },
		"QoS 1 session: %d of %d messages", distinct(&q1.inbox, &q1b.inbox), total)
	q2.wait(t, total)
	got2 := payloadsOn(q2.all(), topic)
	if dups := orderPerPublisher(t, "QoS 2 session", got2); dups > 0 || len(got2) != total {
		t.Errorf("QoS 2 session: %d messages, %d duplicates; want %d exactly once", len(got2), dups, total)
	}
	dups := orderPerPublisher(t, "QoS 1 session", payloadsOn(append(q1.all(), q1b.all()...), topic))
	if dups > 1 { // at most what was in flight when it moved
		t.Errorf("QoS 1 session: %d duplicates", dups)
	}
	p, m := stored()
	t.Logf("%d publishes stored in %d stream messages; QoS 1 duplicates after the takeover: %d", p, m, dups)
	if p != int64(total) || m >= p {
		t.Errorf("stored %d publishes in %d stream messages: want %d in fewer messages (batches)", p, m, total)
	}
}

// max_offline_messages counts publishes, not stream messages: a batch of
// several is counted as several.
func TestMaxOfflineCountsBatchedPublishes(t *testing.T) {
	c := shared(t)
	setMaxOffline(t, c, 5)
	const topic = "batch/offline"
	sub := dialV5(t, c.addr(1), "batch-offline", true, 600)
	sub.sub(t, topic, 1)
	testutil.Eventually(t, waitFor, func() bool { return c.nodes[1].durable.Follows("batch-offline") }, "durable session not set up")
	_ = sub.Disconnect(&paho.Disconnect{})
	queuedAt(t, c.nodes[1], "batch-offline", 0)

	stored := storedDelta(c)
	pub := dialV3(t, c.addr(0), "batch-offline-pub", true)
	fire(t, pub, topic, 1, "m", 40)
	if p, m := stored(); m >= p {
		t.Fatalf("40 publishes stored in %d stream messages: no batch to count", m)
	}
	drops := dropCounter(c, "offline_queue_full")
	again := dialV5(t, c.addr(2), "batch-offline", false, 600)
	if !again.connack.SessionPresent {
		t.Fatal("session present = 0")
	}
	fences := dialV5(t, c.addr(0), "batch-offline-fences", true, 0)
	queuedOnce(t, &again.inbox, fences, topic, numbered("m", 35, 40))
	drops.await(t, 35)
}
