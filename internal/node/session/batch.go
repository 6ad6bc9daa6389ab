package session

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/node/store"
)

// Batching publishes to one topic into one queue stream message.
//
// Each stream message costs the stream a raft entry on every replica, and
// its removal once every interested anchor's floor passed it another one
// (nats-server proposes a delete per message of an interest stream): per
// message, that was most of the replicated path's CPU. Publishes to one
// topic are stored one stream publish at a time: while one is in flight,
// those that arrive wait and then go together as one message (a queue
// batch, see meshwire/batch.go), up to meshwire.MaxBatch publishes or
// batchBytes. A publish that finds nothing in flight goes at once, so a
// quiet topic waits for nothing; a busy one waits at most one store round
// trip and gets the store's work divided by the batch. Publishes to
// different topics never share a message (the subject is the topic: the
// anchors' filters select by it), so a device publishing to a topic of
// its own gains nothing.

const (
	batchInflight = 1         // stream publishes in flight per subject
	batchBytes    = 256 << 10 // a batch closes at this size (NATS max_payload is 1 MiB)
)

// fromHeader names the publisher of a stream message that is not a batch.
const fromHeader = "Mqlb-From"

// storing is a client's publish being stored.
type storing struct {
	pk   packets.Packet
	from string        // the client's id
	env  []byte        // its envelope, in a batch
	done chan struct{} // closed once err is set
	err  error         // nil: stored on the replicas
	// released: a QoS 2 PUBLISH resent after its exchange completed
	// (Durable.Released): answered PUBREC, not stored or delivered again
	released bool
}

func (s *storing) settle(err error) {
	s.err = err
	close(s.done)
}

func (s *storing) settled() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// batcher holds the publishes waiting for their subject's stream publish.
type batcher struct {
	mu     sync.Mutex
	bySubj map[string]*subjectQueue
}

type subjectQueue struct {
	waiting  []*storing
	size     int
	inflight int
}

// take removes the next batch from q and counts it in flight.
func (q *subjectQueue) take() []*storing {
	n, size := 0, 0
	for n < len(q.waiting) && n < meshwire.MaxBatch && (n == 0 || size+len(q.waiting[n].env) <= batchBytes) {
		size += len(q.waiting[n].env) + len(q.waiting[n].from)
		n++
	}
	out := q.waiting[:n:n]
	q.waiting = q.waiting[n:]
	q.size -= size
	q.inflight++
	return out
}

// enqueue stores s in the queue stream under subject, in a batch with
// others; s.done is closed once it is stored or failed.
func (d *Durable) enqueue(subject string, s *storing) {
	b := &d.batches
	b.mu.Lock()
	if b.bySubj == nil {
		b.bySubj = map[string]*subjectQueue{}
	}
	q := b.bySubj[subject]
	if q == nil {
		q = &subjectQueue{}
		b.bySubj[subject] = q
	}
	q.waiting = append(q.waiting, s)
	q.size += len(s.env) + len(s.from)
	var send []*storing
	if q.inflight < batchInflight || len(q.waiting) >= meshwire.MaxBatch || q.size >= batchBytes {
		send = q.take()
	}
	b.mu.Unlock()
	if send != nil {
		d.sendBatch(subject, send)
	}
}

// sendBatch publishes one batch and, once the stream answers, settles its
// publishes and sends what waited meanwhile.
func (d *Durable) sendBatch(subject string, items []*storing) {
	msg := batchMessage(subject, items)
	if d.batchIDs(items) {
		// A retry after a timeout must not store the QoS 2 publishes twice
		// (the stream drops a message whose id it has seen).
		msg.Header.Set(jetstream.MsgIDHeader, d.env.Instance+"."+strconv.FormatUint(d.batchSeq.Add(1), 36))
	}
	w := d.send(msg)
	go func() {
		err := d.held(msg, w)
		if err == nil {
			d.storedMsgs.Add(1)
			d.stored.Add(int64(len(items)))
		}
		for _, s := range items {
			s.settle(err)
		}
		b := &d.batches
		b.mu.Lock()
		q := b.bySubj[subject]
		q.inflight--
		var next []*storing
		switch {
		case len(q.waiting) > 0:
			next = q.take()
		case q.inflight == 0:
			delete(b.bySubj, subject)
		}
		b.mu.Unlock()
		if next != nil {
			d.sendBatch(subject, next)
		}
	}()
}

// batchIDs reports whether a batch needs a message id: it holds a QoS 2
// publish.
func (d *Durable) batchIDs(items []*storing) bool {
	for _, s := range items {
		if s.pk.FixedHeader.Qos == 2 {
			return true
		}
	}
	return false
}

// Holding publishes through a store election.
//
// When the node leading the queue stream dies, the stream has no leader
// until the others elect one (2-9 s), and every store write fails or
// times out meanwhile. Refusing those publishes sends every MQTT 3.1.1
// publisher of the cluster away (it has no negative PUBACK) and makes v5
// publishers handle a refusal, on nodes that are healthy. A write that
// failed in a way an election explains is tried again instead, for up to
// storeHold × mesh.timeout since it was first sent: the publisher waits
// for its acknowledgement meanwhile (its Receive Maximum stops it from
// sending more than that). Only then is it refused. A batch is retried in
// its turn: the publishes behind it on its topic wait, so their order is
// kept. A write that timed out may have been stored after all: retried,
// a QoS 1 publish may then be delivered twice (as after the publisher's
// own resend); QoS 2 ones are stored under a message id, which the stream
// keeps once.

// storeHold is how many times mesh.timeout a publish waits for the queue
// stream before it is refused.
const storeHold = 5

// attempt is a write to the queue stream under way.
type attempt struct {
	st  *store.Store
	fut jetstream.PubAckFuture
	err error // the write could not be sent
	at  time.Time
}

// send starts writing msg to the queue stream.
func (d *Durable) send(msg *nats.Msg) attempt {
	a := attempt{at: time.Now()}
	a.st, a.err = d.env.Store()
	if a.err == nil && a.st.Queue == nil {
		a.err = store.ErrNotReady
	}
	if a.err == nil {
		a.fut, a.err = a.st.JS.PublishMsgAsync(msg)
	}
	return a
}

// wait returns once the write is acknowledged (nil) or failed.
func (d *Durable) wait(a attempt) error {
	err := a.err
	if err == nil {
		timeout := time.NewTimer(d.env.Timeout)
		select {
		case <-a.fut.Ok():
		case err = <-a.fut.Err():
		case <-timeout.C:
			err = context.DeadlineExceeded
		}
		timeout.Stop()
	}
	if err != nil && a.st != nil {
		a.st.Note(err)
	}
	return err
}

// held waits for the write under way and writes msg again while it fails
// in a way an election explains, until storeHold × mesh.timeout since the
// first.
func (d *Durable) held(msg *nats.Msg, a attempt) error {
	deadline := a.at.Add(storeHold * d.env.Timeout)
	backoff := 100 * time.Millisecond
	for {
		err := d.wait(a)
		if err == nil || !electionError(err) || time.Now().Add(backoff).After(deadline) {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-d.env.Ctx.Done():
			return err
		}
		backoff = min(2*backoff, time.Second)
		d.retried.Add(1)
		a = d.send(msg)
	}
}

// electionError reports whether err is what writes get while the store's
// streams have no leader, or this node cannot reach it: the write may
// succeed later.
func electionError(err error) bool {
	var api *jetstream.APIError
	switch {
	case errors.Is(err, store.ErrDown), errors.Is(err, store.ErrNotReady),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrConnectionReconnecting):
		return true
	case errors.As(err, &api):
		return api.Code == 503 // JetStream temporarily unavailable
	}
	return false
}

// batchMessage is the stream message of a batch: a single publish as
// before batches (its envelope, the publisher in a header), several as a
// queue batch.
func batchMessage(subject string, items []*storing) *nats.Msg {
	msg := &nats.Msg{Subject: subject, Header: nats.Header{}}
	if len(items) == 1 {
		msg.Data = items[0].env
		msg.Header.Set(fromHeader, items[0].from)
		return msg
	}
	size := 0
	for _, s := range items {
		size += len(s.from) + len(s.env) + 2*binary.MaxVarintLen64
	}
	data := make([]byte, 0, size)
	for _, s := range items {
		data = meshwire.AppendBatchItem(data, s.from, s.env)
	}
	msg.Data = data
	msg.Header.Set(meshwire.BatchHeader, strconv.Itoa(len(items)))
	return msg
}

// Stored returns how many publishes were stored in the queue stream, and
// in how many stream messages (mqlb_node_queue_publishes_total,
// mqlb_node_queue_messages_total).
func (d *Durable) Stored() (publishes, messages int64) {
	return d.stored.Load(), d.storedMsgs.Load()
}

// Retried returns how many queue stream writes were tried again after a
// failure an election explains (mqlb_node_queue_retries_total).
func (d *Durable) Retried() int64 { return d.retried.Load() }
