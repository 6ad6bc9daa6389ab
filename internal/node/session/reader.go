package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/node/store"
)

// Reading the queue stream for a session and moving its anchor: the
// JetStream API requests nats.go has no call for (v1.4x: batched direct
// gets and consumer resets), on the store's connection.

// qmsg is one message read from the queue stream.
type qmsg struct {
	seq     uint64
	stored  time.Time // when the stream stored it (message expiry counts from there)
	from    string    // the publisher's client id (NoLocal), when not a batch
	data    []byte    // the envelope, or a queue batch
	batch   string    // the batch header: the item count ("": not a batch)
	subject string
	leader  bool // read from the stream's leader: the replica lacked it (readQueue)
}

// A position in the queue is a publish's stream sequence and its index in
// the message (a queue batch holds several, see batch.go), as seq<<8 |
// index: readers' cursors, deliveries in flight, the QoS 2 records and a
// handed-over position count in positions; anchors' floors in stream
// sequences.
func posOf(seq uint64, index int) uint64 { return seq<<8 | uint64(index) }

// seqOf is the stream sequence of a position.
func seqOf(pos uint64) uint64 { return pos >> 8 }

// item is one publish of a queue message.
type item struct {
	pos    uint64    // its position
	next   uint64    // the position after it: the next message's first once it is the last
	from   string    // the publisher's client id
	data   []byte    // the envelope
	stored time.Time // when the stream stored it
}

// items returns the publishes of a queue message; an error for a batch
// that does not parse.
func (m qmsg) items() ([]item, error) {
	if m.batch == "" {
		return []item{{pos: posOf(m.seq, 0), next: posOf(m.seq+1, 0), from: m.from, data: m.data, stored: m.stored}}, nil
	}
	n, err := strconv.Atoi(m.batch)
	if err != nil {
		return nil, err
	}
	parts, err := meshwire.SplitBatch(m.data, n)
	if err != nil {
		return nil, err
	}
	out := make([]item, len(parts))
	for i, p := range parts {
		out[i] = item{pos: posOf(m.seq, i), next: posOf(m.seq, i+1), from: p.From, data: p.Data, stored: m.stored}
	}
	out[len(out)-1].next = posOf(m.seq+1, 0)
	return out, nil
}

// replyMux routes the answers of direct gets, which come as several
// messages to one reply subject, to the request waiting for them: one
// subscription per node instead of one per request.
type replyMux struct {
	mu      sync.Mutex
	nc      *nats.Conn
	sub     *nats.Subscription
	prefix  string
	next    uint64
	waiting map[string]chan *nats.Msg
}

// open returns a reply subject and the channel its answers arrive on.
func (m *replyMux) open(nc *nats.Conn) (string, chan *nats.Msg, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nc != nc || m.sub == nil || !m.sub.IsValid() {
		if m.sub != nil {
			_ = m.sub.Unsubscribe()
		}
		m.prefix = nc.NewInbox() // not under nats.go's own request inboxes (see touch)
		sub, err := nc.Subscribe(m.prefix+".*", m.route)
		if err != nil {
			return "", nil, err
		}
		_ = sub.SetPendingLimits(-1, -1) // bounded by each request's batch
		m.nc, m.sub, m.waiting = nc, sub, map[string]chan *nats.Msg{}
	}
	m.next++
	reply := m.prefix + "." + strconv.FormatUint(m.next, 36)
	ch := make(chan *nats.Msg, durableWindow+2)
	m.waiting[reply] = ch
	return reply, ch, nil
}

func (m *replyMux) close(reply string) {
	m.mu.Lock()
	delete(m.waiting, reply)
	m.mu.Unlock()
}

func (m *replyMux) route(msg *nats.Msg) {
	m.mu.Lock()
	ch := m.waiting[msg.Subject]
	m.mu.Unlock()
	if ch == nil {
		return // a request that gave up
	}
	select {
	case ch <- msg:
	default: // more than asked for: the request reads again from where it got
	}
}

// errShort is a direct get whose answer stopped early; what arrived is
// good, the rest is read again.
var errShort = errors.New("session queue: direct get answer incomplete")

// fetchBytes bounds one direct get's answer (a queue batch is up to
// batchBytes): a replica stops the batch there.
const fetchBytes = 1 << 20

// fetch reads up to n messages of the queue on subject (wildcards allowed)
// from sequence from on, in order, from whichever replica answers first. A
// replica answers with every message it holds in that range, so what comes
// back has no gaps: a replica behind the others has fewer. more reports
// that the answer stopped at fetchBytes with more to read.
func (d *Durable) fetch(ctx context.Context, st *store.Store, subject string, from uint64, n int) (out []qmsg, more bool, err error) {
	nc := st.JS.Conn()
	reply, ch, err := d.replies.open(nc)
	if err != nil {
		return nil, false, err
	}
	defer d.replies.close(reply)
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
		Batch   int    `json:"batch"`
		Bytes   int    `json:"max_bytes"`
	}{from, subject, n, fetchBytes})
	if err != nil {
		return nil, false, err
	}
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+st.Queue.CachedInfo().Config.Name, reply, req); err != nil {
		return nil, false, err
	}
	for {
		var msg *nats.Msg
		select {
		case msg = <-ch:
		case <-ctx.Done():
			if len(out) > 0 {
				return out, false, nil
			}
			return nil, false, ctx.Err()
		}
		switch status := msg.Header.Get("Status"); status {
		case "":
		case "204": // end of the batch
			pending, _ := strconv.ParseUint(msg.Header.Get("Nats-Num-Pending"), 10, 64)
			return out, pending > 0 && len(out) < n, nil
		case "404": // nothing (more) from this sequence on
			return out, false, nil
		default:
			if len(out) > 0 {
				return out, false, nil
			}
			return nil, false, fmt.Errorf("session queue: direct get: %s %s", status, msg.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(msg.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil || seq < from || (len(out) > 0 && seq <= out[len(out)-1].seq) {
			if len(out) > 0 {
				return out, false, nil
			}
			return nil, false, errShort
		}
		stored, _ := time.Parse(time.RFC3339Nano, msg.Header.Get("Nats-Time-Stamp"))
		out = append(out, qmsg{seq: seq, stored: stored, from: msg.Header.Get(fromHeader),
			data: msg.Data, batch: msg.Header.Get(meshwire.BatchHeader), subject: msg.Header.Get("Nats-Subject")})
		if len(out) == n {
			return out, false, nil // (the end-of-batch marker follows; nobody waits for it)
		}
	}
}

// readQueue is fetch, checked with the stream's leader wherever the
// replica's answer may have left out a message the session wants.
//
// A replica's copy is the leader's up to where it has caught up, in raft
// order — except that a replica that joined or caught up by a snapshot
// (a scale-up of the stream, a node back after a long absence) has been seen
// to miss messages the leader holds, earlier ones while it has later ones:
// the anchor reported messages pending, and the node's own replica answered
// "not found" from the reader's cursor on, run after run. Read alone, the
// reader would wait for them for ever, or skip them as soon as a later
// message arrived: a loss. So an answer that starts past the cursor, or an
// empty one where a message is expected (the reader was woken for one, or
// the anchor reported some pending), is checked: the leader's first message
// on the subject from the cursor on. If it is earlier than the replica's
// first, the replica lacks it: that one message is delivered from the
// leader's answer, and reading goes on (more) from after it. An answer that
// starts at the cursor needs no check; nor does an empty one where nothing
// is expected (an idle session's poll: no request to the leader per idle
// session). The cost is one leader request per read that skipped a range:
// with sessions on their own topics, about every read.
func (d *Durable) readQueue(ctx context.Context, st *store.Store, subject string, from uint64, n int, expect bool) ([]qmsg, bool, error) {
	msgs, more, err := d.fetch(ctx, st, subject, from, n)
	if err != nil || (len(msgs) > 0 && msgs[0].seq == from) || (len(msgs) == 0 && !expect) {
		return msgs, more, err
	}
	lm, err := st.LeaderNext(ctx, st.Queue.CachedInfo().Config.Name, subject, from)
	switch {
	case errors.Is(err, store.ErrNoMessage):
		return msgs, more, nil // what the replica has was removed at the leader meanwhile (expired, or nobody wants it)
	case err != nil:
		return nil, false, fmt.Errorf("session queue: confirming a replica's answer with the leader: %w", err)
	case len(msgs) > 0 && lm.Seq >= msgs[0].seq:
		return msgs, more, nil
	}
	d.replicaMisses.Add(1)
	d.env.Warn("session queue: the replica read lacks a message the stream's leader has; reading it from the leader",
		"stream_seq", lm.Seq, "replica_first", firstSeq(msgs))
	return []qmsg{{seq: lm.Seq, stored: lm.Time, from: lm.Header.Get(fromHeader), data: lm.Data,
		batch: lm.Header.Get(meshwire.BatchHeader), subject: lm.Subject, leader: true}}, true, nil
}

// firstSeq is the first sequence of msgs, 0 for none.
func firstSeq(msgs []qmsg) uint64 {
	if len(msgs) == 0 {
		return 0
	}
	return msgs[0].seq
}

// ReplicaMisses returns how many queue messages a session read from the
// stream's leader because the replica it read lacked them
// (mqlb_node_queue_replica_misses_total).
func (d *Durable) ReplicaMisses() int64 { return d.replicaMisses.Load() }

// apiError is the error of a JetStream API answer.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (%d)", e.Description, e.ErrCode) }

// resetAnchor moves id's anchor so that next is the first message it still
// holds for the session: its ack floor becomes next-1, and the stream drops
// what nobody else wants below it. The answer comes once a quorum of the
// anchor's replicas has it.
func (d *Durable) resetAnchor(ctx context.Context, st *store.Store, id string, next uint64) error {
	req, err := json.Marshal(struct {
		Seq uint64 `json:"seq"`
	}{next})
	if err != nil {
		return err
	}
	subject := "$JS.API.CONSUMER.RESET." + st.Queue.CachedInfo().Config.Name + "." + ConsumerName(id)
	msg, err := st.JS.Conn().RequestWithContext(ctx, subject, req)
	if err != nil {
		return err
	}
	var resp struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return resp.Error
	}
	return nil
}

// touch keeps id's anchor from being removed as inactive (its inactive
// threshold, sessions.max_expiry plus a minute, removes the anchor of a
// session whose node died and whose client never came back): a pull
// request that does not wait. If it gets a message, that message stays
// unacknowledged on the anchor, which the next reset or a reader starting
// from the ack floor ignores.
func (d *Durable) touch(st *store.Store, id string) {
	req := []byte(`{"batch":1,"no_wait":true}`)
	subject := "$JS.API.CONSUMER.MSG.NEXT." + st.Queue.CachedInfo().Config.Name + "." + ConsumerName(id)
	// An inbox nobody subscribes to. Not one of nats.go's request inboxes: a
	// message delivered to it arrives with the stream's subject, which
	// nats.go would hand to whichever request is waiting alone.
	_ = st.JS.Conn().PublishRequest(subject, st.JS.Conn().NewInbox(), req)
}

// anchorPosition returns where id's reader starts: the anchor's floor plus
// one, the number of messages the anchor holds from there, and the
// stream's last sequence (messages up to it may have reached the client
// before).
func (d *Durable) anchorPosition(ctx context.Context, st *store.Store, id string) (next uint64, pending int, last uint64, err error) {
	cons, err := st.Queue.Consumer(ctx, ConsumerName(id))
	if err != nil {
		return 0, 0, 0, err
	}
	info := cons.CachedInfo()
	sinfo, err := st.Queue.Info(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	next = max(info.AckFloor.Stream+1, info.Config.OptStartSeq)
	return next, int(info.NumPending) + info.NumAckPending, sinfo.State.LastSeq, nil
}
