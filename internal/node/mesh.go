package node

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/topic"
)

// mesh moves publishes between nodes over NATS.
//
// Out: every publish accepted from a local client (and every will) is sent
// once, as an envelope on the subject of its topic, over the data connection
// (NoEcho: a node never receives its own publishes, so nothing loops).
//
// In: for each distinct MQTT filter held by local sessions (connected or
// not) the node holds plain NATS subscriptions on the filter's subjects,
// reference-counted by client. A message matching several of them arrives
// once per subscription; the replay window lets the first copy through, and
// that one is injected into the local broker, which fans it out to every
// local subscriber. Each member of a $share group holds NATS queue
// subscriptions (queue name from the shared filter) on a separate connection,
// so NATS picks one member per group cluster-wide; that copy is injected for
// that group only. All these subscriptions deliver into two inboxes with two
// goroutines each (meshin.go), so a filter costs its subscriptions and no
// goroutine. See select.go for how the local broker is told which
// subscribers an injected message is for.
type mesh struct {
	n      *Node
	log    *slog.Logger
	subj   meshwire.Subjects
	data   *nats.Conn // publishes and plain subscriptions; NoEcho
	queue  *nats.Conn // shared subscription members
	origin string     // this node instance: first half of every message id
	seq    atomic.Uint64

	plainIn  *meshInbox   // every plain subscription delivers here
	sharedIn *meshInbox   // every shared member's subscription delivers here
	memberOf sync.Map     // *nats.Subscription → member
	plainCl  *mqtt.Client // injects messages for plain subscribers
	sharedCl *mqtt.Client // injects messages for one shared group
	replay   *meshwire.ReplayWindow
	delays   *meshwire.Delays // how late QoS 0 messages arrive, per origin
	maxDelay atomic.Int64     // mesh.qos0_max_delay in nanoseconds; 0 never drops (Reload may change it)
	out      *meshOut         // publishes, batched per subject
	injectMu sync.Mutex       // plain deliveries: one at a time, in arrival order

	mu      sync.Mutex
	plain   map[string]*plainInterest // MQTT filter → its NATS subscriptions
	members map[member][]*nats.Subscription
	groups  map[string]int // shared filter → members here
	nsubs   atomic.Int64   // NATS subscriptions held for interest

	sentMu     sync.RWMutex  // held to add or remove the sentinel; read-held while a queue copy is injected
	sentOn     atomic.Bool   // the sentinel is subscribed (select.go); changed under sentMu
	sentKick   chan struct{} // asks watchSentinel to drop it
	sharedRefs atomic.Int64  // shared members recorded, or being recorded
	willUntil  atomic.Int64  // unix second until which a delayed will may be published

	policy  atomic.Value // string: shared_subscriptions.policy (Reload may change it)
	handled sync.Map     // message id (or willKey) → []string shared filters served locally (local_first)
	rrMu    sync.Mutex
	rr      map[string]uint64 // shared filter → rotation counter
}

type plainInterest struct {
	clients map[string]struct{}
	subs    []*nats.Subscription
}

// member is one client in one shared subscription ("$share/g/filter").
type member struct{ filter, client string }

// Client ids of the mesh's inline clients. MQTT strings cannot contain U+0000
// [MQTT-1.5.4-2], so no real client can share them (or match them in NoLocal).
const (
	plainClientID  = "\x00mqlb-mesh"
	sharedClientID = "\x00mqlb-mesh-shared"
)

func newMesh(n *Node, data, queue *nats.Conn) *mesh {
	m := &mesh{
		n: n, log: n.log, subj: meshwire.NewSubjects(n.cfg.Mesh.ClusterName),
		data: data, queue: queue, origin: n.instance,
		replay: meshwire.NewReplayWindow(), delays: meshwire.NewDelays(), plain: map[string]*plainInterest{},
		members: map[member][]*nats.Subscription{}, groups: map[string]int{}, rr: map[string]uint64{},
		sentKick: make(chan struct{}, 1),
	}
	m.sentOn.Store(true) // newBroker subscribed it
	m.policy.Store(n.cfg.SharedSubscriptions.Policy)
	m.maxDelay.Store(int64(n.cfg.Mesh.QoS0MaxDelay))
	m.plainCl = n.broker.NewClient(nil, "mesh", plainClientID, true)
	m.sharedCl = n.broker.NewClient(nil, "mesh", sharedClientID, true)
	for _, cl := range []*mqtt.Client{m.plainCl, m.sharedCl} {
		cl.Properties.ProtocolVersion = 5 // keep v5 properties and message expiry on injected packets
	}
	if data != nil {
		m.startInboxes(n.ctx)
	}
	m.out = &meshOut{batch: n.cfg.Mesh.Batches(),
		send: func(subject string, data []byte) error {
			if m.data == nil {
				return nats.ErrConnectionClosed
			}
			return m.data.Publish(subject, data)
		},
		fail: func(subject string, err error) {
			m.n.metrics.dropped("mesh_unavailable")
			m.n.warnEvery("mesh publish failed", "subject", subject, "error", err)
		},
		batches: func(int) { m.n.metrics.meshBatches.Add(1) },
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		m.watchSentinel(n.ctx)
	}()
	return m
}

// isMesh reports whether cl is one of the mesh's inline clients (the node
// creates no other inline client).
func isMesh(cl *mqtt.Client) bool { return cl != nil && cl.Net.Inline }

// subscribe records that client holds filter and returns true when that made
// the node subscribe on NATS (so the caller can wait for peers to learn it).
func (m *mesh) subscribe(client, filter string) bool {
	if _, inner, ok := topic.SplitShared(filter); ok {
		m.sharedRefs.Add(1) // before the sentinel: dropSentinel leaves it
		m.ensureSentinel()
		added := m.addMember(member{filter, client}, inner)
		if !added {
			m.sharedRefs.Add(-1) // a member already: its own reference stays
		}
		return added
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	pi := m.plain[filter]
	if pi == nil {
		pi = &plainInterest{clients: map[string]struct{}{}}
		m.plain[filter] = pi
	}
	if _, ok := pi.clients[client]; ok {
		return false
	}
	pi.clients[client] = struct{}{}
	if len(pi.subs) > 0 {
		return false
	}
	for _, s := range m.subj.Filter(filter) {
		sub, err := m.subscribePlain(s)
		if err != nil {
			m.log.Error("mesh subscribe failed", "topic", filter, "error", err)
			continue
		}
		pi.subs = append(pi.subs, sub)
	}
	m.nsubs.Add(int64(len(pi.subs)))
	return true
}

func (m *mesh) addMember(mb member, inner string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.members[mb]; ok {
		return false
	}
	var subs []*nats.Subscription
	for _, s := range m.subj.Filter(inner) {
		sub, err := m.subscribeMember(mb, s)
		if err != nil {
			m.log.Error("mesh queue subscribe failed", "topic", mb.filter, "client_id", mb.client, "error", err)
			continue
		}
		subs = append(subs, sub)
	}
	m.members[mb] = subs
	m.groups[mb.filter]++
	m.nsubs.Add(int64(len(subs)))
	return true
}

// unsubscribe records that client no longer holds filter.
func (m *mesh) unsubscribe(client, filter string) {
	if _, _, ok := topic.SplitShared(filter); ok {
		m.mu.Lock()
		removed := m.removeMember(member{filter, client})
		m.mu.Unlock()
		if removed {
			m.sharedRefs.Add(-1) // after its subscriptions left memberOf
			m.dropSentinel()
		}
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	pi := m.plain[filter]
	if pi == nil {
		return
	}
	delete(pi.clients, client)
	if len(pi.clients) == 0 {
		m.drop(pi.subs)
		delete(m.plain, filter)
	}
}

// removeMember drops one shared member (m.mu held), and the group's
// rotation counter with its last member here.
func (m *mesh) removeMember(mb member) bool {
	subs, ok := m.members[mb]
	if !ok {
		return false
	}
	m.drop(subs)
	delete(m.members, mb)
	if m.groups[mb.filter]--; m.groups[mb.filter] > 0 {
		return true
	}
	delete(m.groups, mb.filter)
	m.rrMu.Lock()
	delete(m.rr, mb.filter)
	m.rrMu.Unlock()
	return true
}

func (m *mesh) drop(subs []*nats.Subscription) {
	for _, sub := range subs {
		_ = sub.Unsubscribe()
		m.memberOf.Delete(sub)
	}
	m.nsubs.Add(-int64(len(subs)))
}

// nextID assigns a message id to a local publish.
func (m *mesh) nextID() meshwire.MsgID {
	return meshwire.MsgID{Origin: m.origin, Seq: m.seq.Add(1)}
}

// publish sends a local publish to the other nodes. handled lists the shared
// subscriptions this node already served (local_first).
func (m *mesh) publish(pk packets.Packet, id meshwire.MsgID, handled []string) {
	e := meshwire.Envelope{
		ID: id, Topic: pk.TopicName, QoS: pk.FixedHeader.Qos,
		Retain: pk.FixedHeader.Retain, Props: meshwire.Props(pk.Properties),
		Handled: handled, Payload: pk.Payload,
	}
	if e.QoS == 0 {
		e.Sent = time.Now().UnixMilli() // a receiver drops it if it took too long (late)
	}
	if pk.Expiry > 0 {
		left := pk.Expiry - time.Now().Unix()
		if left <= 0 {
			m.n.metrics.dropped("message_expired")
			return
		}
		e.HasExpiry, e.Expiry = true, uint32(min(left, 1<<32-1))
	}
	buf := envelopes.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledEnvelope {
			envelopes.Put(buf)
		}
	}()
	data := meshwire.AppendEnvelope((*buf)[:0], &e)
	*buf = data
	if len(data) > int(m.data.MaxPayload()) {
		m.n.metrics.dropped("too_large")
		m.n.warnEvery("message too large for the mesh: delivered on this node only", "topic", pk.TopicName, "bytes", len(data))
		return
	}
	m.out.add(m.subj.Topic(pk.TopicName), data)
	m.n.metrics.meshOut.Add(1)
}

// envelopes holds buffers to encode publishes into: nats.go copies what
// Publish is given before it returns.
var envelopes = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledEnvelope = 64 << 10 // larger buffers are let go

// eachEnvelope calls f with every envelope of a mesh message: the one it
// is, or those of a mesh batch (see meshOut).
func (m *mesh) eachEnvelope(msg *nats.Msg, f func([]byte)) {
	items, batch, err := meshwire.SplitMeshBatch(msg.Data)
	switch {
	case err != nil:
		m.n.metrics.dropped("malformed")
	case !batch:
		f(msg.Data)
	default:
		for _, it := range items {
			f(it.Data)
		}
	}
}

// onPlain handles a message of a plain subscription (one at a time).
func (m *mesh) onPlain(msg *nats.Msg) { m.eachEnvelope(msg, m.plainEnvelope) }

func (m *mesh) plainEnvelope(data []byte) {
	var e meshwire.Envelope
	if err := meshwire.DecodeEnvelopeInto(&e, data); err != nil {
		m.n.metrics.dropped("malformed")
		return
	}
	m.n.metrics.meshIn.Add(1)
	if m.late(&e) {
		return
	}
	m.injectMu.Lock()
	defer m.injectMu.Unlock()
	if !m.replay.Fresh(e.ID, time.Now()) {
		m.n.metrics.meshDuplicates.Add(1)
		return
	}
	m.inject(&e, m.plainCl, meshwire.Tag{ID: e.ID})
}

// onShared handles a message for one member of a shared subscription.
func (m *mesh) onShared(mb member, msg *nats.Msg) {
	m.eachEnvelope(msg, func(data []byte) { m.sharedEnvelope(mb, data) })
}

func (m *mesh) sharedEnvelope(mb member, data []byte) {
	var e meshwire.Envelope
	if err := meshwire.DecodeEnvelopeInto(&e, data); err != nil {
		m.n.metrics.dropped("malformed")
		return
	}
	m.n.metrics.meshIn.Add(1)
	if m.late(&e) {
		return
	}
	if slices.Contains(e.Handled, mb.filter) {
		m.n.metrics.meshSharedSkipped.Add(1) // served on the publishing node
		return
	}
	m.inject(&e, m.sharedCl, meshwire.Tag{ID: e.ID, Member: meshwire.Member{Client: mb.client, Filter: mb.filter}})
}

// late reports (and counts) a QoS 0 message that took more than
// mesh.qos0_max_delay longer to arrive than its origin's quickest recent
// ones, which is dropped: a receiving node that falls behind (a flood to
// one topic, more than it can deliver) skips what waited, at the cost of a
// decode, instead of delivering every message seconds late and staying
// behind. QoS 1 and 2 messages are never dropped, and carry no Sent time.
func (m *mesh) late(e *meshwire.Envelope) bool {
	bound := time.Duration(m.maxDelay.Load())
	if e.QoS != 0 || e.Sent == 0 || bound <= 0 || !m.delays.Late(e.ID.Origin, e.Sent, time.Now(), bound) {
		return false
	}
	m.n.metrics.dropped("qos0_late")
	return true
}

// inject delivers a mesh message into the local broker as if published here
// by one of the mesh's inline clients. Retained messages keep their RETAIN
// flag for Retain As Published subscribers [MQTT-3.3.1-12], but the local
// retained store follows the key-value bucket only (see retained.go).
func (m *mesh) inject(e *meshwire.Envelope, cl *mqtt.Client, tag meshwire.Tag) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: e.QoS, Retain: e.Retain},
		TopicName:   e.Topic,
		Payload:     e.Payload,
		Properties:  e.Props,
	}
	if e.QoS > 0 {
		pk.PacketID = 1 // required of a QoS 1/2 PUBLISH; inline publishes are never acknowledged
	}
	if e.HasExpiry {
		pk.Properties.MessageExpiryInterval = e.Expiry
	}
	meshwire.SetTag(&pk, tag)
	deliver := func() {
		if err := m.n.broker.InjectPacket(cl, pk); err != nil {
			m.n.warnEvery("mesh delivery failed", "topic", e.Topic, "error", err)
		}
	}
	if e.Retain {
		m.n.retained.keepStore(e.Topic, deliver)
		return
	}
	deliver()
}
