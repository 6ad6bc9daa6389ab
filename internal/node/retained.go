package node

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/node/store"
)

// retained keeps retained messages cluster-wide. The key-value bucket is the
// truth: a retained publish on any node is written there (an empty payload
// deletes the key [MQTT-3.3.1-10] [MQTT-3.3.1-11]), and every node applies
// the bucket's changes, in the bucket's order, to mochi's local retained
// store, from which new subscribers get them [MQTT-3.3.1-6]. A restarted
// node (or a whole cluster restarted on the same data directories) reloads
// them from the bucket.
//
// Value: uvarint unix time the message was published, then its envelope.
type retained struct {
	n  *Node
	mu sync.Mutex // mochi's retained store changes only under mu

	appliedMu sync.Mutex
	applied   uint64        // the bucket's last revision applied here
	advanced  chan struct{} // closed (and replaced) when applied grows
}

func retainedKey(topic string) string { return base64.RawURLEncoding.EncodeToString([]byte(topic)) }

// keepStore runs deliver (the injection of a retained mesh message) and then
// puts back what mochi's store held for the topic before: mochi stores every
// retained publish it processes, but a mesh copy may be older than what the
// bucket already applied here.
func (r *retained) keepStore(topic string, deliver func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, had := r.n.broker.Topics.Retained.Get(topic)
	deliver()
	if had {
		r.n.broker.Topics.RetainMessage(prev)
	} else {
		r.n.broker.Topics.RetainMessage(packets.Packet{TopicName: topic}) // removes it
	}
}

// store writes a retained publish made on this node to the bucket. It runs
// in the publisher's goroutine before mochi acknowledges a QoS 1/2 publish,
// so a PUBACK means the retained message is stored cluster-wide.
func (r *retained) store(pk packets.Packet) {
	st, err := r.n.liveStore()
	if err != nil {
		r.n.metrics.retainedUnstored.Add(1)
		r.n.warnEvery("retained message kept on this node only", "topic", pk.TopicName, "error", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.n.cfg.Mesh.Timeout.D())
	defer cancel()
	key := retainedKey(pk.TopicName)
	if len(pk.Payload) == 0 {
		err = r.remove(ctx, st, key)
	} else {
		err = r.put(ctx, st, key, pk)
	}
	if st.Note(err) != nil {
		r.n.metrics.retainedUnstored.Add(1)
		r.n.warnEvery("retained message not stored cluster-wide", "topic", pk.TopicName, "error", err)
	}
}

func (r *retained) put(ctx context.Context, st *store.Store, key string, pk packets.Packet) error {
	e := meshwire.Envelope{ID: meshwire.MsgID{Origin: r.n.instance}, Topic: pk.TopicName, QoS: pk.FixedHeader.Qos, Retain: true,
		Props: meshwire.Props(pk.Properties), Payload: pk.Payload}
	now := time.Now().Unix()
	var ttl time.Duration
	if pk.Expiry > 0 {
		left := max(pk.Expiry-now, 1)
		e.HasExpiry, e.Expiry = true, uint32(min(left, 1<<32-1))
		ttl = time.Duration(left) * time.Second
	}
	val := meshwire.AppendEnvelope(binary.AppendUvarint(nil, uint64(now)), &e)
	if ttl > 0 && st.TTL {
		msg := &nats.Msg{Subject: "$KV." + st.Retained.Bucket() + "." + key, Data: val}
		_, err := st.JS.PublishMsg(ctx, msg, jetstream.WithMsgTTL(max(ttl, time.Second)))
		return err
	}
	_, err := st.Retained.Put(ctx, key, val)
	return err
}

func (r *retained) remove(ctx context.Context, st *store.Store, key string) error {
	var opts []jetstream.KVDeleteOpt
	if st.TTL {
		opts = append(opts, jetstream.PurgeTTL(store.MarkerTTL))
	}
	return st.Retained.Purge(ctx, key, opts...)
}

// errWatchStart: the watcher's consumer could not be created.
var errWatchStart = errors.New("watch not started")

// watch applies the bucket to mochi's store until ctx ends. ready is called
// once the bucket's current content is applied.
func (r *retained) watch(ctx context.Context, kv jetstream.KeyValue, ready func()) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", errWatchStart, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("retained watcher stopped")
			}
			if e == nil {
				ready() // the initial content is applied
				continue
			}
			r.apply(e)
		}
	}
}

func (r *retained) apply(e jetstream.KeyValueEntry) {
	defer r.advance(e.Revision())
	topicBytes, err := base64.RawURLEncoding.DecodeString(e.Key())
	if err != nil {
		return
	}
	topic := string(topicBytes)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		r.n.broker.Topics.RetainMessage(packets.Packet{TopicName: topic})
		return
	}
	pk, ok := retainedPacket(e.Value())
	if !ok || pk.TopicName != topic {
		r.n.broker.Topics.RetainMessage(packets.Packet{TopicName: topic})
		return
	}
	r.n.broker.Topics.RetainMessage(pk)
}

// advance records that the bucket is applied up to rev.
func (r *retained) advance(rev uint64) {
	r.appliedMu.Lock()
	defer r.appliedMu.Unlock()
	if rev <= r.applied {
		return
	}
	r.applied = rev
	if r.advanced != nil {
		close(r.advanced)
		r.advanced = nil
	}
}

// caughtUp waits (at most the mesh timeout) until this node has applied
// every retained write the bucket had acknowledged when it was called: a
// subscriber arriving after the PUBACK of an overwrite or delete on another
// node then never gets the older value from this node's copy. It runs
// before mochi sends a new subscription its retained messages.
func (r *retained) caughtUp() {
	st, err := r.n.liveStore()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.n.cfg.Mesh.Timeout.D())
	defer cancel()
	status, err := st.Retained.Status(ctx)
	if err != nil {
		st.Note(err)
		return
	}
	bs, ok := status.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return
	}
	last := bs.StreamInfo().State.LastSeq
	for {
		r.appliedMu.Lock()
		if r.applied >= last {
			r.appliedMu.Unlock()
			return
		}
		if r.advanced == nil {
			r.advanced = make(chan struct{})
		}
		ch := r.advanced
		r.appliedMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			r.n.warnEvery("retained messages: this node lags the bucket", "applied", r.applied, "last", last)
			return
		}
	}
}

// retainedPacket decodes a bucket value into the packet mochi keeps, or false
// when it is malformed or its message expiry has passed [MQTT-3.3.2-5].
func retainedPacket(val []byte) (packets.Packet, bool) {
	created, n := binary.Uvarint(val)
	if n <= 0 {
		return packets.Packet{}, false
	}
	e, err := meshwire.DecodeEnvelope(val[n:])
	if err != nil {
		return packets.Packet{}, false
	}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: e.QoS, Retain: true},
		TopicName:       e.Topic,
		Payload:         e.Payload,
		Properties:      e.Props,
		Created:         int64(created),
		ProtocolVersion: 5, // mochi expires only v5 retained messages
	}
	if e.HasExpiry {
		pk.Expiry = int64(created) + int64(e.Expiry)
		if pk.Expiry <= time.Now().Unix() {
			return packets.Packet{}, false
		}
		pk.Properties.MessageExpiryInterval = e.Expiry
	}
	return pk, true
}

// retainedCount returns how many retained messages this node holds, not
// counting mochi's own per-node $SYS topics.
func retainedCount(s *mqtt.Server) int {
	n := 0
	for topic := range s.Topics.Retained.GetAll() {
		if !strings.HasPrefix(topic, mqtt.SysPrefix) {
			n++
		}
	}
	return n
}

// retainedFull reports whether pk would add a retained topic past
// mqtt.max_retained_messages. Replacing or clearing one is always taken.
func (n *Node) retainedFull(pk packets.Packet) bool {
	limit := n.cfg.MQTT.MaxRetainedMessages
	all := n.broker.Topics.Retained.Len() // mochi's own $SYS topics included
	if limit <= 0 || len(pk.Payload) == 0 || all < limit || all-n.sysRetained() < limit {
		return false
	}
	_, replaces := n.broker.Topics.Retained.Get(pk.TopicName)
	return !replaces
}

// sysRetained counts the $SYS topics mochi keeps retained (a fixed set of
// about 25), at most every 10 s: only a node at its retained limit asks.
func (n *Node) sysRetained() int {
	now := time.Now().UnixNano()
	if at := n.sysCountedAt.Load(); at != 0 && now-at < int64(10*time.Second) {
		return int(n.sysCount.Load())
	}
	k := 0
	for topic := range n.broker.Topics.Retained.GetAll() {
		if strings.HasPrefix(topic, "$SYS") {
			k++
		}
	}
	n.sysCount.Store(int64(k))
	n.sysCountedAt.Store(now)
	return k
}
