package node

import (
	"fmt"
	"sync"
	"testing"
)

// TestMeshBatchesAcrossNodes: publishes fired at one node together reach
// the subscribers on the others in mesh batches (mesh.batch, on by
// default), each exactly once and in each publisher's order — a plain
// subscriber and the members of a shared subscription on two other nodes,
// one of which gets each message (a batch goes to one member whole; the
// members' shares interleave, so the order is checked on the plain one).
func TestMeshBatchesAcrossNodes(t *testing.T) {
	c := shared(t)
	const topic, pubs, each = "meshbatch/order", 4, 500
	plain := dialV3(t, c.addr(1), "meshbatch-plain", true)
	plain.sub(t, topic, 1)
	m1 := dialV3(t, c.addr(1), "meshbatch-m1", true)
	m1.sub(t, "$share/mb/"+topic, 1)
	m2 := dialV3(t, c.addr(2), "meshbatch-m2", true)
	m2.sub(t, "$share/mb/"+topic, 1)
	batches := c.nodes[0].metrics.meshBatches.Load()

	var wg sync.WaitGroup
	for k := range pubs {
		p := dialV3(t, c.addr(0), fmt.Sprintf("meshbatch-pub%d", k), true)
		wg.Go(func() { fire(t, p, topic, 1, fmt.Sprintf("p%d-", k), each) })
	}
	wg.Wait()
	total := pubs * each
	got := payloadsOn(plain.wait(t, total), topic)
	if dups := orderPerPublisher(t, "plain subscriber", got); dups > 0 || len(got) != total {
		t.Errorf("plain subscriber: %d messages, %d duplicates; want %d exactly once", len(got), dups, total)
	}
	shared := func() []string {
		return append(payloadsOn(m1.all(), topic), payloadsOn(m2.all(), topic)...)
	}
	m1.inbox.waitN(t, &m2.inbox, total)
	seen := map[string]bool{}
	for _, p := range shared() {
		seen[p] = true
	}
	if len(seen) != total || len(shared()) != total {
		t.Errorf("shared group: %d messages (%d + %d), %d distinct; want %d, each to one member",
			len(shared()), m1.count(), m2.count(), len(seen), total)
	}
	sent := c.nodes[0].metrics.meshBatches.Load() - batches
	t.Logf("%d publishes: %d mesh batches", total, sent)
	if sent == 0 {
		t.Errorf("no mesh batch sent for %d publishes fired together", total)
	}
}
