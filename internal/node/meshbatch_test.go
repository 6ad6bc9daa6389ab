package node

import (
	"fmt"
	"sync"
	"testing"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestMeshBatchesAcrossNodes: publishes fired at one node together reach
// the subscribers on the others in mesh batches (mesh.batch, on in the
// shared cluster), each exactly once and in each publisher's order — a plain
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
	out := c.nodes[0].mesh.out
	open := holdFirstSend(t, out, c.nodes[0].mesh.subj.Topic(topic))

	var wg sync.WaitGroup
	for k := range pubs {
		p := dialV3(t, c.addr(0), fmt.Sprintf("meshbatch-pub%d", k), true)
		wg.Go(func() { fire(t, p, topic, 1, fmt.Sprintf("p%d-", k), each) })
	}
	// Batches form while a send is under way: hold the first until the
	// other publishers' have queued behind it.
	testutil.Eventually(t, waitFor, func() bool {
		out.mu.Lock()
		defer out.mu.Unlock()
		return len(out.items) >= 50
	}, "publishes not queued behind a send under way")
	open()
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

// holdFirstSend makes o's first send to subject wait until the returned
// function is called (at the latest when the test ends), and puts o's send
// back at the end.
func holdFirstSend(t *testing.T, o *meshOut, subject string) (open func()) {
	t.Helper()
	gate := make(chan struct{})
	var once, held sync.Once
	open = func() { once.Do(func() { close(gate) }) }
	o.mu.Lock() // every send follows a lock of o.mu (mesh.batch on)
	send := o.send
	o.send = func(s string, data []byte) error {
		if s == subject {
			held.Do(func() { <-gate })
		}
		return send(s, data)
	}
	o.mu.Unlock()
	t.Cleanup(func() {
		open()
		o.mu.Lock()
		o.send = send
		o.mu.Unlock()
	})
	return open
}
