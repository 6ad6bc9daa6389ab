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
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/topic"
)

// Replicated durable sessions (sessions.durability: replicated).
//
// Every QoS 1/2 publish accepted from a local client is stored, before the
// PUBACK/PUBREC, once in the stream mqlb_<cluster>_queue (subjects
// mqlb.<c>.q.<t|d>.<levels>, interest retention, mesh.replicas replicas).
// Each persistent session with QoS 1/2 subscriptions has a durable consumer
// (name from its client id) whose filter subjects are those subscriptions':
// the consumer is the session's queue and its delivery state, replicated
// like the stream, so it survives the node that owns the session. The
// owning node pulls from it while the client is connected (at most
// durableWindow unacknowledged) and delivers each message with a packet id
// derived from its stream sequence, so a message resent after a crash keeps
// its id; it acknowledges the consumer when the client does (PUBACK for
// QoS 1, PUBCOMP for QoS 2). Such sessions get no live copy of QoS 1/2
// messages (select hook); QoS 0 and clean sessions never touch the store.
//
// When the owner dies, the next node the client connects to pulls from the
// same consumer: what was queued is delivered, and what was in flight is
// redelivered once its ack wait (durableAckWait) passes. A live owner giving
// a session up returns its in-flight messages to the consumer at once (NAK).

const (
	durableWindow  = 100             // unacknowledged deliveries per session
	durableAckWait = 2 * time.Second // before a delivery not acknowledged is redelivered
)

// Durable holds the node's durable sessions.
type Durable struct {
	env      Env
	sessions *Tracker
	subj     meshwire.Subjects // the queue's subject space: mqlb.<c>.q
	on       bool

	chains sync.Map // *mqtt.Client → chan struct{}: closed when its last publish being stored is handed back

	mu      sync.Mutex
	byID    map[string]*dsession
	failed  map[*mqtt.Client]struct{} // resumed while its queue could not be followed: sent away
	nfailed atomic.Int32              // len(failed)
}

// dsession is one persistent session's consumer and deliveries on this node.
type dsession struct {
	id      string
	filters []packets.Subscription // QoS 1/2 subscriptions the consumer follows

	mu       sync.Mutex
	room     *sync.Cond   // on mu: signalled when a delivery is acknowledged or pulling stops
	synced   bool         // this node wrote the consumer with filters
	known    bool         // the consumer exists (written, or the session came from a node that wrote it)
	cl       *mqtt.Client // the connection being served (nil: not pulling)
	cc       jetstream.ConsumeContext
	stopCh   chan struct{}      // closed when pulling for cl ends
	inflight map[uint16]dflight // packet id → delivery not yet acknowledged by the client
	// done holds the stream sequences the client has: unconfirmed acks (zero
	// time) and, for a while, confirmed ones, since a redelivery may already
	// be on its way when an ack lands.
	done  map[uint64]time.Time
	doneQ []doneAt // confirmed sequences, oldest first, to forget them
	over  int      // queued messages over max_offline_messages when the session resumed
}

type dflight struct {
	seq uint64
	msg jetstream.Msg
}

func newDurable(env Env) *Durable {
	return &Durable{env: env, subj: meshwire.NewSubjects(env.Cluster + ".q"),
		on: env.Replicated, byID: map[string]*dsession{},
		failed: map[*mqtt.Client]struct{}{}}
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
		ds.stop(cl, false)
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
	return d.on && !endsWithConnection(cl)
}

// get returns the durable session of id (nil if none).
func (d *Durable) get(id string) *dsession {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byID[id]
}

// covers reports whether id's consumer delivers QoS 1/2 messages on the
// topic name: then the session gets no live copy.
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
			return true
		}
	}
	return false
}

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
// front, which tries another node on that code) comes back later.
func (d *Durable) refuse(cl *mqtt.Client, pk packets.Packet) {
	if !d.on || pk.Connect.Clean || endsWithConnection(cl) {
		return
	}
	d.mu.Lock()
	d.failed[cl] = struct{}{}
	d.nfailed.Store(int32(len(d.failed)))
	d.mu.Unlock()
}

// Refused reports whether cl is refused (see refuse): its CONNACK says so.
func (d *Durable) Refused(cl *mqtt.Client) bool {
	if d.nfailed.Load() == 0 {
		return false // the usual case: no lock
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	_, failed := d.failed[cl]
	return failed
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
