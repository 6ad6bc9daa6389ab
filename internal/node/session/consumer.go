package session

import (
	"context"
	"errors"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/node/store"
	"github.com/mqlb/mqlb/internal/topic"
)

// The anchor of each durable session (see durable.go): written from its
// subscriptions, deleted when the session ends.

// sync makes id's consumer follow subs (its QoS 1/2 non-shared ones):
// created, updated, or deleted when none are left. Without write (a session
// resumed or taken over, whose consumer already has these filters) the
// consumer is written by the pulling loop, so a JetStream leader election
// does not hold up the CONNACK. The session follows its
// queue from now on even when the store cannot be written right now (a
// JetStream leader election after a node died): the consumer then keeps its
// earlier filters until the pulling loop updates it. It returns whether the
// consumer was written.
func (d *Durable) sync(ctx context.Context, id string, subs map[string]packets.Subscription, write bool) bool {
	var filters []packets.Subscription
	for _, s := range subs {
		if _, _, shared := topic.SplitShared(s.Filter); shared || s.Qos == 0 {
			continue
		}
		filters = append(filters, s)
	}
	if len(filters) == 0 {
		if d.get(id) != nil {
			d.End(id)
		}
		return true
	}
	d.mu.Lock()
	ds := d.byID[id]
	if ds == nil {
		ds = &dsession{id: id, inflight: map[uint16]uint64{}, wake: make(chan struct{}, 1)}
		ds.room = sync.NewCond(&ds.mu)
		d.byID[id] = ds
	}
	d.mu.Unlock()
	ds.mu.Lock()
	ds.filters, ds.synced = filters, false
	ds.gen++
	ds.known = ds.known || !write
	ds.mu.Unlock()
	if !write {
		return false // the pulling loop writes it
	}
	return d.write(ctx, ds)
}

// write creates or updates ds's anchor with its filters. A new anchor
// starts after the stream's last message (a session gets what is published
// once it has subscribed); an existing one keeps its start and floor.
//
// Writes of one anchor run one at a time, and each takes the filters once
// the one before it is done: the reader's write (position) and a
// SUBSCRIBE's (Resubscribed) may overlap, and the one that took the
// filters first could otherwise be applied last and take the new
// subscription off the anchor — covers would keep the live copy from the
// session, and the stream, which keeps a message only for a consumer
// whose filters want it, would not store it. A write that sent filters
// replaced meanwhile leaves the anchor unsynced: the newer one follows.
func (d *Durable) write(ctx context.Context, ds *dsession) bool {
	ds.writing.Lock()
	defer ds.writing.Unlock()
	ds.mu.Lock()
	if ds.synced {
		ds.mu.Unlock()
		return true // written with the current filters while this write waited
	}
	gen := ds.gen
	var subjects []string
	for _, f := range ds.filters {
		subjects = append(subjects, d.subj.QueueFilter(f.Filter))
	}
	ds.mu.Unlock()
	st, err := d.env.Store()
	if err != nil || st.Queue == nil {
		return false
	}
	cfg := jetstream.ConsumerConfig{
		Durable:           ConsumerName(ds.id),
		Description:       "mqlb session " + ds.id,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           durableAckWait,
		MaxAckPending:     durableWindow,
		MaxDeliver:        -1,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		FilterSubjects:    disjoint(subjects, d.subj),
		InactiveThreshold: d.env.MaxExpiry + time.Minute,
		// Its state in memory on each replica: a floor move is a raft
		// operation and no file rewrite. A node that restarts gets it back
		// from the others; a whole cluster restarting starts each anchor
		// from its start sequence, which resends what the stream still
		// holds for the session (nothing is lost: the stream is on disk and
		// keeps what an anchor has not passed).
		MemoryStorage: true,
	}
	err = func() error {
		cons, err := st.Queue.Consumer(ctx, cfg.Durable)
		if err == nil && cons.CachedInfo().Config.DeliverPolicy == cfg.DeliverPolicy {
			cfg.OptStartSeq = cons.CachedInfo().Config.OptStartSeq
			_, err = st.Queue.UpdateConsumer(ctx, cfg)
			return err
		}
		if err == nil {
			// written by an earlier version (a pulled consumer, deliver
			// policy new, which cannot be reset): replaced by an anchor at
			// its ack floor
			cfg.OptStartSeq = cons.CachedInfo().AckFloor.Stream + 1
			if err := st.Queue.DeleteConsumer(ctx, cfg.Durable); err != nil {
				return err
			}
			_, err = st.Queue.CreateConsumer(ctx, cfg)
			return err
		}
		if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return err
		}
		info, err := st.Queue.Info(ctx)
		if err != nil {
			return err
		}
		cfg.OptStartSeq = info.State.LastSeq + 1
		_, err = st.Queue.CreateConsumer(ctx, cfg)
		return err
	}()
	if err != nil {
		st.Note(err)
		d.env.Warn("session queue not writable yet: retrying", "client_id", ds.id, "error", err)
		return false
	}
	ds.mu.Lock()
	ds.synced, ds.known = ds.gen == gen, true
	ds.mu.Unlock()
	return true
}

// disjoint returns the filter subjects, or the whole queue when two of them
// overlap (a consumer's filters may not): deliver then matches topics itself.
func disjoint(subjects []string, q meshwire.Subjects) []string {
	for i := range subjects {
		for j := i + 1; j < len(subjects); j++ {
			if server.SubjectsCollide(subjects[i], subjects[j]) {
				return []string{q.All()} // (a reader then covers the same)
			}
		}
	}
	return subjects
}

func (d *Durable) deleteConsumer(ctx context.Context, st *store.Store, id string) {
	d.drop(id)
	err := st.Queue.DeleteConsumer(ctx, ConsumerName(id))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		st.Note(err)
		d.env.Warn("session queue: consumer not deleted", "client_id", id, "error", err)
	}
}

// drop forgets id's durable session here (its anchor stays).
func (d *Durable) drop(id string) {
	d.mu.Lock()
	ds := d.byID[id]
	delete(d.byID, id)
	d.mu.Unlock()
	if ds != nil {
		d.stop(ds, nil)
		ds.mu.Lock()
		ds.gone = true
		ds.room.Broadcast()
		ds.mu.Unlock()
	}
}

// End deletes id's anchor: the session is over (clean start, expiry).
func (d *Durable) End(id string) {
	if !d.on {
		return
	}
	st, err := d.env.Store()
	if err != nil || st.Queue == nil {
		d.drop(id)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*d.env.Timeout)
	defer cancel()
	d.deleteConsumer(ctx, st, id)
}

// countOffline notes, before the CONNACK of a resumed session, that the
// publishes queued up to now may be over max_offline_messages; the reader
// counts them first and drops what is over, oldest first (a message
// published after the client is back is never counted). The anchor counts
// stream messages, and a queue batch holds several publishes: only a queue
// too short to be over in any case is not counted.
func (d *Durable) countOffline(cl *mqtt.Client) {
	limit := int(d.sessions.maxOffline.Load())
	ds := d.get(cl.ID)
	if ds == nil || limit <= 0 {
		return
	}
	st, err := d.env.Store()
	if err != nil || st.Queue == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.env.Timeout)
	defer cancel()
	cons, err := st.Queue.Consumer(ctx, ConsumerName(cl.ID))
	if err != nil {
		return
	}
	info := cons.CachedInfo()
	if queued := int(info.NumPending) + info.NumAckPending; queued == 0 || queued*meshwire.MaxBatch <= limit {
		return
	}
	sinfo, err := st.Queue.Info(ctx)
	if err != nil {
		return
	}
	ds.mu.Lock()
	ds.countTo, ds.countLimit = sinfo.State.LastSeq, limit
	ds.mu.Unlock()
}

// countOver counts, once, the publishes queued for ds up to the stream
// sequence noted by countOffline, from the reader's cursor, and notes how
// many are over the limit. The publishes a takeover handed over to be sent
// again (ds.resend, behind the cursor: the old node had sent them to the
// offline session) are queued too, and the oldest: they count, and are the
// first dropped.
func (d *Durable) countOver(ds *dsession, st *store.Store) error {
	ds.mu.Lock()
	upTo, limit, from, subject := ds.countTo, ds.countLimit, ds.cursor, d.readSubject(ds)
	total := len(ds.resend)
	ds.mu.Unlock()
	if upTo == 0 {
		return nil
	}
	seq := seqOf(from)
read:
	for seq <= upTo {
		ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
		msgs, _, err := d.readQueue(ctx, st, subject, seq, durableWindow, false)
		cancel()
		if err != nil {
			return st.Note(err)
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			if m.seq > upTo {
				break read
			}
			items, err := m.items()
			if err != nil {
				items = []item{{pos: posOf(m.seq, 0)}} // dropped as malformed: counts once
			}
			for _, it := range items {
				if it.pos >= from {
					total++
				}
			}
			seq = m.seq + 1
		}
	}
	ds.mu.Lock()
	if ds.countTo == upTo {
		ds.over, ds.countTo = max(total-limit, 0), 0
	}
	ds.mu.Unlock()
	return nil
}
