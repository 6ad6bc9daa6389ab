package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/topic"
)

// Replicated durable sessions (sessions.durability: replicated).
//
// Every QoS 1/2 publish accepted from a local client is stored, before the
// PUBACK/PUBREC, once in the stream mqlb_<cluster>_queue (subjects
// mqlb.<c>.q.<t|d>.<levels>.~~, interest retention, mesh.replicas
// replicas). Each persistent session with QoS 1/2 subscriptions has a
// durable consumer, its anchor (name from its client id), whose filter
// subjects are those subscriptions': it holds the session's interest in the
// stream, so nothing the session still wants is removed, and its ack floor
// is the session's replicated position: every message at or below it is
// with the client. The anchor is never pulled. The node that owns the
// session reads the stream itself while the client is connected (direct
// gets from the nearest replica, reader.go), from its own cursor, at most
// durableWindow unacknowledged; it delivers each message with a packet id
// derived from its stream sequence, so a message resent after a crash keeps
// its id, and it moves the anchor's floor up (a consumer reset, one raft
// operation) as the client acknowledges, at most every anchorEvery. A
// message's live copy over the mesh only wakes the reader. Such sessions
// get no live copy of QoS 1/2 messages (select hook); QoS 0 and clean
// sessions never touch the store.
//
// When the owner dies, the next node the client connects to reads from the
// anchor's floor: what was queued or in flight is delivered again, and so
// are QoS 1 messages acknowledged since the floor last moved (QoS 2 ones
// get their PUBREL, see qos2.go). A live owner giving a session up moves
// the floor to the exact position first.
//
// Before, the anchor was the reader too (pulled): nats-server proposes one
// raft entry per delivery and one per acknowledgement of a replicated
// consumer, which cost more than the rest of the path together
// (docs/node.md, "Where the CPU goes").

const (
	durableWindow  = 100             // unacknowledged deliveries per session
	durableAckWait = 2 * time.Second // the anchor's ack wait (it delivers only to keepalive pulls)
	anchorEvery    = 50 * time.Millisecond
)

// Durable holds the node's durable sessions.
type Durable struct {
	env      Env
	sessions *Tracker
	subj     meshwire.Subjects // the queue's subject space: mqlb.<c>.q
	on       bool

	chains   sync.Map      // *mqtt.Client → *handBacks: its publishes being stored (publish.go)
	received receivedCache // QoS 2 received records written here, until their PUBREL (qos2.go)

	mu      sync.Mutex
	byID    map[string]*dsession
	failed  map[*mqtt.Client]string // resumed while its queue could not be followed: sent away, and why
	nfailed atomic.Int32            // len(failed)

	replies replyMux // answers to direct gets (reader.go)
	batches batcher  // publishes waiting to be stored together (batch.go)

	stored, storedMsgs atomic.Int64  // publishes stored in the queue stream, and the stream messages they went in
	retried            atomic.Int64  // queue stream writes tried again (held through an election)
	batchSeq           atomic.Uint64 // message ids of batches holding QoS 2 publishes
	replicaMisses      atomic.Int64  // queue messages read from the leader: the replica lacked them (reader.go)
}

// dsession is one persistent session's anchor and reader on this node.
type dsession struct {
	id      string
	filters []packets.Subscription // QoS 1/2 subscriptions the anchor follows

	// writing serializes the writes of the anchor (write): each sends the
	// filters it found, so one that started earlier and answered later
	// would put back filters a newer write replaced.
	writing sync.Mutex

	mu       sync.Mutex
	gen      uint64     // counts changes of filters: a write marks the anchor synced only if none came meanwhile
	room     *sync.Cond // on mu: signalled when a delivery is acknowledged, reading stops or a floor is confirmed
	synced   bool       // this node wrote the anchor with filters
	known    bool       // the anchor exists (written, or the session came from a node that wrote it)
	gone     bool       // dropped or handed off: its floor must not move any more
	cl       *mqtt.Client
	stopCh   chan struct{}     // closed when reading for cl ends
	wake     chan struct{}     // (1) a publish this session's queue may hold
	inflight map[uint16]uint64 // packet id → queue position (posOf) of a delivery the client has not acknowledged
	// coalesced: a poke found wake full: the wake there stands for more
	// than one publish (see poke).
	coalesced atomic.Bool

	// cursor is the next queue position to read (0: not positioned; then
	// from the anchor's floor). Every publish below it that the session
	// wants has been delivered (or dropped).
	cursor uint64
	// high: publishes at or below this position may have reached the client before,
	// through another node or this node's earlier run: sent with DUP, and
	// for QoS 2 after checking the PUBREC record.
	high uint64
	// resend: deliveries below the cursor the client had not acknowledged
	// on the node that handed the session over, to send first.
	resend []uint64
	// pending: the anchor reported messages queued when the reader was
	// positioned: an empty first read is checked with the leader (readQueue).
	pending bool
	over    int // queued publishes over max_offline_messages when the session resumed: dropped first
	// countTo: the stream's last sequence when the session resumed with
	// possibly more than countLimit (max_offline_messages) publishes
	// queued; the reader counts them first (countOver). 0: nothing to count.
	countTo    uint64
	countLimit int

	floorSent uint64    // the anchor's floor (a stream sequence) as last confirmed
	moving    bool      // a goroutine is moving the anchor's floor (advance)
	lastMove  time.Time // when the floor was last moved
	released  []uint64  // positions of completed QoS 2 deliveries whose records go once the floor passes them
	touched   time.Time // the anchor's last keepalive
}

func newDurable(env Env) *Durable {
	return &Durable{env: env, subj: meshwire.NewSubjects(env.Cluster + ".q"),
		on: env.Replicated, byID: map[string]*dsession{},
		failed: map[*mqtt.Client]string{}}
}

// On reports whether sessions are replicated (sessions.durability
// replicated).
func (d *Durable) On() bool { return d.on }

// Follows reports whether id's session follows its queue on this node.
func (d *Durable) Follows(id string) bool { return d.get(id) != nil }

// Disconnected stops pulling for a connection that ended (OnDisconnect) and
// deletes the consumer of a session that ended with it.
func (d *Durable) Disconnected(cl *mqtt.Client, expire bool) {
	d.forgetClient(cl)
	if ds := d.get(cl.ID); ds != nil {
		d.stop(ds, cl)
		if expire {
			d.End(cl.ID)
		}
	}
}

// ConsumerName is the name of the durable consumer of a client id's queue.
func ConsumerName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "s" + hex.EncodeToString(sum[:16])
}

// Persistent reports whether cl's session is one the queue keeps.
func (d *Durable) Persistent(cl *mqtt.Client) bool {
	return d.on && !EndsWithConnection(cl)
}

// get returns the durable session of id (nil if none).
func (d *Durable) get(id string) *dsession {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byID[id]
}

// covers reports whether id's queue delivers QoS 1/2 messages on the topic
// name: then the session gets no live copy, and its reader is woken.
func (d *Durable) covers(id, name string) bool {
	ds := d.get(id)
	if ds == nil {
		return false
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if !ds.known {
		return false // live delivery until the consumer is written
	}
	for _, f := range ds.filters {
		if topic.Match(f.Filter, name) {
			ds.poke() // the publish is in the queue: read it
			return true
		}
	}
	return false
}

// poke wakes the session's reader for a publish the queue stream holds
// (its live copy comes only once the stream's leader has stored it).
//
// A poke that finds the slot full is coalesced with the wake waiting there:
// that one wake stands for two publishes or more, and a read from a replica
// a moment behind the leader may find the first and not the others — a
// read that finds something ends a wake. So the poke sets coalesced, which
// the reader swaps (took) right after each wake it takes; a wake found so
// marked is read on until the leader confirms there is nothing more (read).
//
// The invariant: after each Store(true) the reader takes a wake, and swaps
// right after; the first swap after the Store returns true, and what it
// leads to, a read checked with the leader, starts after the Store and so
// finds the publish. Hence the second send: between the first send and the
// Store the reader may have taken the waiting wake and swapped, which
// would leave the flag set and the slot empty; the second send puts a wake
// there after the Store, or finds one there after it. A flag set between a
// take and its swap makes that wake read on, and the one left in the slot
// reads once more: a read too many, never one short.
func (ds *dsession) poke() {
	select {
	case ds.wake <- struct{}{}:
		return
	default:
	}
	ds.coalesced.Store(true)
	select {
	case ds.wake <- struct{}{}:
	default:
	}
}

// took is called by the reader right after it takes a wake: whether the
// wake stands for more than one publish (see poke).
func (ds *dsession) took() bool { return ds.coalesced.Swap(false) }

// FilterOut removes from a publish's local recipients the durable sessions
// whose consumer delivers it (select hook).
func (d *Durable) FilterOut(subs *mqtt.Subscribers, pk packets.Packet) {
	if !d.on || pk.FixedHeader.Qos == 0 || strings.HasPrefix(pk.TopicName, "$SYS") {
		return
	}
	for id, sub := range subs.Subscriptions {
		if sub.Qos > 0 && d.covers(id, pk.TopicName) {
			delete(subs.Subscriptions, id)
		}
	}
}

// Resubscribed follows a SUBSCRIBE or UNSUBSCRIBE of a persistent session
// with its consumer, before mochi answers.
func (d *Durable) Resubscribed(cl *mqtt.Client) {
	if !d.Persistent(cl) {
		return
	}
	if _, _, ok := d.sessions.current(cl); !ok {
		return // not in the registry: the session stays on this node
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*d.env.Timeout)
	defer cancel()
	d.sync(ctx, cl.ID, cl.State.Subscriptions.GetAll(), true)
	if !cl.Closed() {
		d.Start(cl)
	}
}

// established sets up the queue of a session that connected here, after
// the registry and any takeover (OnSessionEstablish).
func (d *Durable) established(cl *mqtt.Client, clean, wasPersistent bool, subs map[string]packets.Subscription) {
	if !d.on {
		return
	}
	if clean || !d.Persistent(cl) {
		if wasPersistent || d.get(cl.ID) != nil {
			d.End(cl.ID) // the old session is discarded [MQTT-3.1.2-4]
		}
		return
	}
	if d.get(cl.ID) != nil {
		return // already following (resumed here, or installed by the takeover)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.env.Timeout)
	defer cancel()
	d.sync(ctx, cl.ID, subs, true) // a session this node did not follow yet: its consumer may not exist
}

// refuse turns away a client resuming a persistent session that could not
// be looked up or claimed (the store failed between OnConnect and now):
// resumed here without its queue, it would miss its messages, and told
// "no session" it would drop its own QoS 2 state. Its CONNACK becomes
// "server unavailable" (Refused), so that it (or the load balancer in
// front, which tries another node on that code) comes back later. why
// becomes the v5 CONNACK's Reason String.
func (d *Durable) refuse(cl *mqtt.Client, pk packets.Packet, why string) {
	if !d.wouldRefuse(cl, pk) {
		return
	}
	d.mu.Lock()
	d.failed[cl] = why
	d.nfailed.Store(int32(len(d.failed)))
	d.mu.Unlock()
}

// wouldRefuse reports whether refuse refuses cl.
func (d *Durable) wouldRefuse(cl *mqtt.Client, pk packets.Packet) bool {
	return d.on && !pk.Connect.Clean && !EndsWithConnection(cl)
}

// Refused reports whether cl is refused (see refuse), and why: its CONNACK
// says so.
func (d *Durable) Refused(cl *mqtt.Client) (why string, refused bool) {
	if d.nfailed.Load() == 0 {
		return "", false // the usual case: no lock
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	why, refused = d.failed[cl]
	return why, refused
}

// subsMap turns registry subscriptions into mochi's form.
func subsMap(recs []subRecord) map[string]packets.Subscription {
	out := make(map[string]packets.Subscription, len(recs))
	for _, r := range recs {
		out[r.Filter] = r.subscription()
	}
	return out
}

// forgetClient drops what is kept per connection once it is gone.
func (d *Durable) forgetClient(cl *mqtt.Client) {
	d.chains.Delete(cl)
	d.mu.Lock()
	delete(d.failed, cl)
	d.nfailed.Store(int32(len(d.failed)))
	d.mu.Unlock()
}
