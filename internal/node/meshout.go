package node

import (
	"sync"

	"github.com/mqlb/mqlb/internal/node/meshwire"
)

// meshOut sends the node's mesh publishes, and those to one subject that
// wait together as one NATS message, a mesh batch (mesh.batch): NATS' work
// per message — the publishing connection's, each server's on the way, the
// receiving connection's and the inbox's — is then paid once per batch.
//
// No goroutine of its own while the mesh is quiet (a hand-off per publish
// cost more than it saved): a publish that finds no send under way sends
// itself, at once and alone; publishes arriving meanwhile wait (copied),
// and when its own send is done the publisher hands them to a goroutine
// that sends them per subject, round after round, until none waits — so
// under load batches form by themselves, and no client's connection is
// held sending for the others. Publishes to one subject keep their order
// (the order MQTT requires is per topic); those to different subjects may
// pass each other.
//
// Off by default: measured side by side it gained 3–9 % on cross-node
// QoS 1 to one topic and cost about 7 % on the same-node path
// (docs/benchmarks.md, "Ninth round").
type meshOut struct {
	mu      sync.Mutex
	sending bool     // a sender is at work; what is added waits for it
	buf     []byte   // envelopes waiting, one after the other
	items   []outRef // where each is, in publish order
	spare   []byte
	batch   bool // mesh.batch

	// The sender's own (one at a time).
	round []outRef
	group grouper

	send    func(subject string, data []byte) error
	fail    func(subject string, err error)
	batches func(n int) // counts a batch of n envelopes sent
}

type outRef struct {
	subject    string
	start, end int
}

const (
	meshBatchMax   = meshwire.MaxBatch // envelopes in one mesh batch
	meshBatchBytes = 256 << 10         // bytes of envelopes in one mesh batch (a single larger one goes alone)
	meshOutKeep    = 1 << 20           // a send buffer larger than this is let go after a burst
)

// add sends one envelope for subject, or queues it (copied) for the sender
// at work.
func (o *meshOut) add(subject string, envelope []byte) {
	if !o.batch {
		o.sendOne(subject, envelope) // as NATS orders concurrent publishes
		return
	}
	o.mu.Lock()
	if o.sending {
		start := len(o.buf)
		o.buf = append(o.buf, envelope...)
		o.items = append(o.items, outRef{subject, start, len(o.buf)})
		o.mu.Unlock()
		return
	}
	o.sending = true
	o.mu.Unlock()
	o.sendOne(subject, envelope)
	o.mu.Lock()
	if len(o.items) == 0 {
		o.sending = false
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	go o.drain() // the publisher's client is not held sending for others
}

// drain sends rounds until none is waiting.
func (o *meshOut) drain() {
	for o.sendRound() {
	}
}

// sendRound sends what waits; false once nothing did (the sender is done).
func (o *meshOut) sendRound() bool {
	o.mu.Lock()
	if len(o.items) == 0 {
		o.sending = false
		o.mu.Unlock()
		return false
	}
	buf := o.buf
	o.round, o.items = o.items, o.round[:0]
	o.buf, o.spare = o.spare[:0], nil
	o.mu.Unlock()
	o.flush(buf, o.round, &o.group)
	clear(o.round) // no subject strings kept
	o.mu.Lock()
	if cap(buf) <= meshOutKeep {
		o.spare = buf
	}
	o.mu.Unlock()
	return true
}

// grouper is the writer's reused state for grouping a round by subject.
type grouper struct {
	first map[string]int // subject → index of its first item in the round
	next  []int          // item → the next item to the same subject (-1: none)
	last  []int          // first item → the last item to its subject so far
	data  []byte         // the batch being built
}

// flush sends one round of items: per subject in the order each first
// appears, the subject's items in their order, in batches.
func (o *meshOut) flush(buf []byte, items []outRef, g *grouper) {
	if len(items) == 1 {
		for _, it := range items {
			o.sendOne(it.subject, buf[it.start:it.end])
		}
		return
	}
	if g.first == nil {
		g.first = map[string]int{}
	}
	clear(g.first)
	g.next, g.last = g.next[:0], g.last[:0]
	for i, it := range items {
		g.next, g.last = append(g.next, -1), append(g.last, i)
		if f, ok := g.first[it.subject]; ok {
			g.next[g.last[f]], g.last[f] = i, i
		} else {
			g.first[it.subject] = i
		}
	}
	for i, it := range items {
		if f := g.first[it.subject]; f != i {
			continue // sent with the subject's first
		}
		for j := i; j >= 0; {
			j = o.sendRun(buf, items, g, j)
		}
	}
}

// sendRun sends, from item j on, as many of its subject's items as one
// batch holds, and returns the next item left to send (-1: none).
func (o *meshOut) sendRun(buf []byte, items []outRef, g *grouper, j int) int {
	n, size, k := 0, 0, j
	for ; k >= 0 && n < meshBatchMax; k = g.next[k] {
		sz := items[k].end - items[k].start
		if n > 0 && size+sz > meshBatchBytes {
			break
		}
		n, size = n+1, size+sz
	}
	if n == 1 {
		o.sendOne(items[j].subject, buf[items[j].start:items[j].end])
		return k
	}
	g.data = meshwire.AppendMeshBatch(g.data[:0], n)
	for m := j; m != k; m = g.next[m] {
		g.data = meshwire.AppendBatchItem(g.data, "", buf[items[m].start:items[m].end])
	}
	o.sendOne(items[j].subject, g.data)
	if o.batches != nil {
		o.batches(n)
	}
	if cap(g.data) > meshOutKeep {
		g.data = nil
	}
	return k
}

func (o *meshOut) sendOne(subject string, data []byte) {
	if err := o.send(subject, data); err != nil {
		o.fail(subject, err)
	}
}
