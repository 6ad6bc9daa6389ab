package session

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/node/store"
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

	mu     sync.Mutex
	byID   map[string]*dsession
	failed map[*mqtt.Client]struct{} // resumed while its queue could not be followed: sent away
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

// Store writes a QoS 1/2 publish of a local client to the queue stream and
// returns once it is stored on the replicas.
func (d *Durable) Store(ctx context.Context, from string, pk packets.Packet, id meshwire.MsgID) error {
	st, err := d.env.Store()
	if err != nil {
		return err
	}
	if st.Queue == nil {
		return store.ErrNotReady
	}
	_, err = st.JS.PublishMsg(ctx, d.message(from, pk, id))
	return st.Note(err)
}

// StoreAsync stores a client's QoS 1/2 publish and then hands it back to
// mochi (InjectPacket as the same client), which acknowledges and delivers
// it; publishes of one client are handed back in their order. A publish
// that cannot be stored is refused: v5 PUBACK/PUBREC 0x80, 3.1.1 (no
// negative acknowledgement) disconnected, so that it resends it.
func (d *Durable) StoreAsync(cl *mqtt.Client, pk packets.Packet) {
	done := make(chan struct{})
	prevV, _ := d.chains.Swap(cl, done)
	prev, _ := prevV.(chan struct{})
	var fut jetstream.PubAckFuture
	st, err := d.env.Store()
	if err == nil && st.Queue == nil {
		err = store.ErrNotReady
	}
	if err == nil {
		id := meshwire.IDOf(&pk)
		msg := d.message(cl.ID, pk, id)
		if pk.FixedHeader.Qos == 2 && d.Persistent(cl) {
			msg.Header.Set(jetstream.MsgIDHeader, id.String()) // a resent PUBLISH is discarded (see qos2.go)
		}
		fut, err = st.JS.PublishMsgAsync(msg)
	}
	go func() {
		defer close(done)
		if err == nil {
			select {
			case <-fut.Ok():
			case err = <-fut.Err():
			case <-time.After(d.env.Timeout):
				err = context.DeadlineExceeded
			}
		}
		if prev != nil {
			<-prev
		}
		if err != nil {
			if st != nil {
				st.Note(err)
			}
			d.RefusePublish(cl, pk, err)
			return
		}
		pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false // resolved on the way in
		if err := d.env.Broker.InjectPacket(cl, pk); err != nil {
			d.env.Warn("stored publish not delivered", "client_id", cl.ID, "error", err)
		}
	}()
}

func (d *Durable) RefusePublish(cl *mqtt.Client, pk packets.Packet, err error) {
	d.env.Warn("session queue unavailable: publish refused", "error", err)
	if cl.Properties.ProtocolVersion < 5 {
		cl.Stop(packets.ErrUnspecifiedError)
		return
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID,
		ReasonCode: packets.ErrUnspecifiedError.Code}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	_ = cl.WritePacket(ack)
}

// message is the stream message of a publish.
func (d *Durable) message(from string, pk packets.Packet, id meshwire.MsgID) *nats.Msg {
	e := meshwire.Envelope{ID: id, Topic: pk.TopicName, QoS: pk.FixedHeader.Qos,
		Retain: pk.FixedHeader.Retain, Props: meshwire.Props(pk.Properties), Payload: pk.Payload}
	if pk.Properties.MessageExpiryInterval > 0 {
		e.HasExpiry, e.Expiry = true, pk.Properties.MessageExpiryInterval
	}
	msg := &nats.Msg{Subject: d.subj.Topic(pk.TopicName), Header: nats.Header{}, Data: meshwire.AppendEnvelope(nil, &e)}
	msg.Header.Set("Mqlb-From", from)
	return msg
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
		ds = &dsession{id: id, inflight: map[uint16]dflight{}, done: map[uint64]time.Time{}}
		ds.room = sync.NewCond(&ds.mu)
		d.byID[id] = ds
	}
	d.mu.Unlock()
	ds.mu.Lock()
	ds.filters, ds.synced = filters, false
	ds.known = ds.known || !write
	ds.mu.Unlock()
	if !write {
		return false // the pulling loop writes it
	}
	return d.write(ctx, ds)
}

// write creates or updates ds's consumer with its filters.
func (d *Durable) write(ctx context.Context, ds *dsession) bool {
	ds.mu.Lock()
	var subjects []string
	for _, f := range ds.filters {
		subjects = append(subjects, d.subj.Filter(f.Filter)...)
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
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		FilterSubjects:    disjoint(subjects, d.subj),
		InactiveThreshold: d.env.MaxExpiry + time.Minute,
	}
	if _, err := st.Queue.CreateOrUpdateConsumer(ctx, cfg); err != nil {
		st.Note(err)
		d.env.Warn("session queue not writable yet: retrying", "client_id", ds.id, "error", err)
		return false
	}
	ds.mu.Lock()
	ds.synced, ds.known = true, true
	ds.mu.Unlock()
	return true
}

// disjoint returns the filter subjects, or the whole queue when two of them
// overlap (a consumer's filters may not): deliver then matches topics itself.
func disjoint(subjects []string, q meshwire.Subjects) []string {
	for i := range subjects {
		for j := i + 1; j < len(subjects); j++ {
			if server.SubjectsCollide(subjects[i], subjects[j]) {
				return []string{q.All()}
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

// drop forgets id's durable session here (its consumer stays).
func (d *Durable) drop(id string) {
	d.mu.Lock()
	ds := d.byID[id]
	delete(d.byID, id)
	d.mu.Unlock()
	if ds != nil {
		ds.stop(nil, false)
	}
}

// End deletes id's consumer: the session is over (clean start, expiry).
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

// Start pulls id's consumer for the connection cl, in the background until
// it works. A client whose session was resumed while it could not be looked
// up is disconnected (server unavailable) so that it comes back later.
func (d *Durable) Start(cl *mqtt.Client) {
	d.mu.Lock()
	_, failed := d.failed[cl]
	delete(d.failed, cl)
	d.mu.Unlock()
	if failed {
		if cl.Properties.ProtocolVersion == 5 {
			_ = d.env.Broker.DisconnectClient(cl, packets.ErrServerUnavailable)
		} else {
			cl.Stop(packets.ErrServerUnavailable)
		}
		return
	}
	ds := d.get(cl.ID)
	if ds == nil {
		return
	}
	ds.mu.Lock()
	if ds.cl == cl && ds.stopCh != nil {
		ds.mu.Unlock()
		return
	}
	ds.stopLocked(false)
	stop := make(chan struct{})
	ds.cl, ds.stopCh = cl, stop
	ds.mu.Unlock()
	d.env.WG.Add(1)
	go d.pull(ds, cl, stop)
}

// pull starts consuming for cl, retrying while the queue is unavailable.
func (d *Durable) pull(ds *dsession, cl *mqtt.Client, stop chan struct{}) {
	defer d.env.WG.Done()
	for {
		cc, err := d.consume(ds, cl)
		if err == nil {
			ds.mu.Lock()
			defer ds.mu.Unlock()
			if ds.stopCh != stop {
				cc.Stop()
				return
			}
			ds.cc = cc
			return
		}
		d.env.Warn("session queue not readable yet: retrying", "client_id", cl.ID, "error", err)
		select {
		case <-stop:
			return
		case <-d.env.Ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (d *Durable) consume(ds *dsession, cl *mqtt.Client) (jetstream.ConsumeContext, error) {
	st, err := d.env.Store()
	if err != nil {
		return nil, err
	}
	if st.Queue == nil {
		return nil, store.ErrNotReady
	}
	ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
	defer cancel()
	ds.mu.Lock()
	synced := ds.synced
	ds.mu.Unlock()
	if !synced && !d.write(ctx, ds) {
		return nil, errors.New("consumer not written")
	}
	cons, err := st.Queue.Consumer(ctx, ConsumerName(cl.ID))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		ds.mu.Lock()
		ds.synced = false // expired or never written: write it again
		ds.mu.Unlock()
	}
	if err != nil {
		return nil, st.Note(err)
	}
	d.trim(cons, ds)
	return cons.Consume(func(m jetstream.Msg) { d.deliver(ds, cl, m) },
		jetstream.PullMaxMessages(durableWindow), jetstream.PullExpiry(5*time.Second),
		jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {}))
}

// countOffline notes, before the CONNACK of a resumed session, how many
// queued messages are over max_offline_messages; the pulling loop drops
// that many, oldest first (a message published after the client is back is
// never counted).
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
	if over := int(info.NumPending) - limit; over > 0 {
		ds.mu.Lock()
		ds.over = over
		ds.mu.Unlock()
	}
}

// trim drops the messages countOffline found over the limit.
func (d *Durable) trim(cons jetstream.Consumer, ds *dsession) {
	ds.mu.Lock()
	over := ds.over
	ds.over = 0
	ds.mu.Unlock()
	for over > 0 {
		batch, err := cons.FetchNoWait(min(over, durableWindow))
		if err != nil {
			return
		}
		got := 0
		for m := range batch.Messages() {
			_ = m.Ack()
			got++
		}
		if got == 0 {
			return
		}
		over -= got
		d.env.Drop("offline_queue_full", got)
	}
}

// stop ends pulling for cl (nil: whatever connection). With nak, the
// deliveries the client did not acknowledge go back to the consumer at once
// (the session moves to another node).
func (ds *dsession) stop(cl *mqtt.Client, nak bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if cl != nil && ds.cl != cl {
		return
	}
	ds.stopLocked(nak)
}

func (ds *dsession) stopLocked(nak bool) {
	defer ds.room.Broadcast()
	if ds.stopCh != nil {
		close(ds.stopCh)
	}
	if ds.cc != nil {
		ds.cc.Stop()
	}
	ds.cc, ds.cl, ds.stopCh = nil, nil, nil
	if nak { // oldest first: the consumer redelivers in that order [MQTT-4.6.0-1]
		back := make([]dflight, 0, len(ds.inflight))
		for _, f := range ds.inflight {
			back = append(back, f)
		}
		slices.SortFunc(back, func(a, b dflight) int { return cmp.Compare(a.seq, b.seq) })
		for _, f := range back {
			_ = f.msg.Nak()
		}
		clear(ds.inflight)
	}
}

// sendWindow is how many deliveries from the queue cl may have
// unacknowledged: its Receive Maximum (v5), at most durableWindow.
func sendWindow(cl *mqtt.Client) int {
	if rm := int(cl.Properties.Props.ReceiveMaximum); cl.Properties.ProtocolVersion == 5 && rm > 0 {
		return min(rm, durableWindow)
	}
	return durableWindow
}

// packetID is a delivery's packet id: from the stream sequence, so that a
// message redelivered by another node after a crash keeps it.
func packetID(seq uint64) uint16 { return uint16((seq-1)%65535) + 1 }

// deliver sends one queued message to the client.
func (d *Durable) deliver(ds *dsession, cl *mqtt.Client, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	e, err := meshwire.DecodeEnvelope(m.Data())
	if err != nil {
		d.env.Drop("malformed", 1)
		_ = m.Term()
		return
	}
	pid := packetID(meta.Sequence.Stream)
	release := meta.NumDelivered > 1 && e.QoS == 2 && d.released(ds.id, meta.Sequence.Stream)
	ds.mu.Lock()
	if ds.cl != cl {
		ds.mu.Unlock()
		return // stopped meanwhile: the message is redelivered later
	}
	if _, ok := ds.done[meta.Sequence.Stream]; ok {
		ds.mu.Unlock()
		go d.confirm(ds, meta.Sequence.Stream, m) // the client has it: the ack was lost
		return
	}
	if f, ok := ds.inflight[pid]; ok {
		if f.seq == meta.Sequence.Stream { // redelivered while the client has it
			ds.inflight[pid] = dflight{seq: f.seq, msg: m}
			_ = m.InProgress()
			ds.mu.Unlock()
			return
		}
		ds.mu.Unlock()
		_ = m.NakWithDelay(durableAckWait) // the id is still taken
		return
	}
	if _, taken := cl.State.Inflight.Get(pid); taken {
		ds.mu.Unlock()
		_ = m.NakWithDelay(durableAckWait)
		return
	}
	if release { // the client has it: it is owed the PUBREL, not the PUBLISH again
		d.sendPubrel(ds, cl, pid, dflight{seq: meta.Sequence.Stream, msg: m})
		ds.mu.Unlock()
		return
	}
	pk, ok := d.packet(ds, cl, e, m, meta)
	if !ok {
		ds.mu.Unlock()
		_ = m.Ack()
		return
	}
	// The client's Receive Maximum [MQTT-3.3.4-9]: wait for an acknowledgement.
	for limit := sendWindow(cl); len(ds.inflight) >= limit && ds.cl == cl; {
		ds.room.Wait()
	}
	if ds.cl != cl {
		ds.mu.Unlock()
		return // stopped meanwhile: the message is redelivered later
	}
	pk.PacketID = pid
	pk.FixedHeader.Dup = meta.NumDelivered > 1 // maybe seen before a crash: the client knows it by its id [MQTT-4.3.3-10]
	ds.inflight[pid] = dflight{seq: meta.Sequence.Stream, msg: m}
	ds.mu.Unlock()
	if cl.State.Inflight.Set(pk) {
		atomic.AddInt64(&d.env.Broker.Info.Inflight, 1)
	}
	_ = cl.WritePacket(pk) // a closed connection gets it resent when it resumes
}

// packet builds the PUBLISH of a queued message for cl, or false when it is
// not for cl (no matching subscription any more, NoLocal, expired).
func (d *Durable) packet(ds *dsession, cl *mqtt.Client, e *meshwire.Envelope, m jetstream.Msg, meta *jetstream.MsgMetadata) (packets.Packet, bool) {
	var qos byte
	var ids []int
	rap, noLocal, found := false, false, false
	for _, f := range ds.filters {
		if !topic.Match(f.Filter, e.Topic) {
			continue
		}
		found = true
		qos = max(qos, f.Qos)
		rap = rap || f.RetainAsPublished
		noLocal = noLocal || f.NoLocal
		if f.Identifier > 0 {
			ids = append(ids, f.Identifier)
		}
	}
	if !found || (noLocal && m.Headers().Get("Mqlb-From") == cl.ID) {
		return packets.Packet{}, false
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(e.QoS, qos),
			Retain: e.Retain && rap && cl.Properties.ProtocolVersion == 5},
		TopicName: e.Topic, Payload: e.Payload, Properties: e.Props,
		Created: time.Now().Unix(), ProtocolVersion: cl.Properties.ProtocolVersion,
	}
	if e.HasExpiry {
		left := int64(e.Expiry) - int64(time.Since(meta.Timestamp)/time.Second)
		if left <= 0 {
			d.env.Drop("message_expired", 1)
			return packets.Packet{}, false
		}
		pk.Expiry = time.Now().Unix() + left
		pk.Properties.MessageExpiryInterval = uint32(left)
	}
	if len(ids) > 0 && cl.Properties.ProtocolVersion == 5 {
		pk.Properties.SubscriptionIdentifier = ids
	}
	if cl.Properties.ProtocolVersion < 5 {
		pk.Properties = packets.Properties{}
	}
	meshwire.SetTag(&pk, meshwire.Tag{ID: e.ID})
	return pk, true
}

// Acked acknowledges the consumer once the client has a message: PUBACK for
// QoS 1, PUBCOMP for QoS 2. A QoS 2 message whose PUBREC was recorded is
// never sent again as a PUBLISH (qos2.go): a node that gets it again after
// a crash sends the PUBREL [MQTT-4.3.3-5].
func (d *Durable) Acked(cl *mqtt.Client, pid uint16, sync bool) {
	ds := d.get(cl.ID)
	if ds == nil {
		return
	}
	ds.mu.Lock()
	f, ok := ds.inflight[pid]
	delete(ds.inflight, pid)
	ds.room.Broadcast()
	if ok {
		ds.done[f.seq] = time.Time{}
	}
	ds.mu.Unlock()
	if !ok {
		return
	}
	if sync {
		// QoS 2: until the consumer confirms, a redelivery finds the PUBREC
		// recorded and gets a PUBREL (qos2.go), so this need not hold up the
		// client's next packet.
		d.env.WG.Add(1)
		go func() {
			defer d.env.WG.Done()
			if d.confirm(ds, f.seq, f.msg) {
				d.forgetReleased(cl.ID, f.seq)
			}
		}()
		return
	}
	// QoS 1: a lost ack costs a duplicate at most; do not wait for it.
	_ = f.msg.Ack()
	ds.mu.Lock()
	ds.confirmed(f.seq, time.Now())
	ds.mu.Unlock()
}

// confirm acknowledges a delivery and waits for the consumer to confirm it.
// An ack lost (a consumer leader election) leaves the sequence in done, so
// its redelivery is acknowledged again instead of sent to the client twice.
func (d *Durable) confirm(ds *dsession, seq uint64, m jetstream.Msg) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d.env.Timeout)
	defer cancel()
	if m.DoubleAck(ctx) != nil {
		return false
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.confirmed(seq, time.Now())
	return true
}

// confirmed records an acknowledged sequence and forgets old ones (ds.mu
// held).
func (ds *dsession) confirmed(seq uint64, now time.Time) {
	ds.done[seq] = now
	ds.doneQ = append(ds.doneQ, doneAt{seq, now})
	for len(ds.doneQ) > 0 && now.Sub(ds.doneQ[0].at) > 3*durableAckWait {
		if old := ds.doneQ[0]; ds.done[old.seq] == old.at {
			delete(ds.done, old.seq)
		}
		ds.doneQ = ds.doneQ[1:]
	}
}

type doneAt struct {
	seq uint64
	at  time.Time
}

// DeliveryIDs returns the packet ids of cl's deliveries from its consumer.
func (d *Durable) DeliveryIDs(cl *mqtt.Client) map[uint16]bool {
	if cl == nil {
		return nil
	}
	ds := d.get(cl.ID)
	out := map[uint16]bool{}
	if ds == nil {
		return out
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	for pid := range ds.inflight {
		out[pid] = true
	}
	return out
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

// refuse sends away, once connected, a client resuming a persistent session
// that could not be looked up (the store failed between OnConnect and now):
// resumed here without its queue, it would miss its messages.
func (d *Durable) refuse(cl *mqtt.Client, pk packets.Packet) {
	if !d.on || pk.Connect.Clean || endsWithConnection(cl) {
		return
	}
	d.mu.Lock()
	d.failed[cl] = struct{}{}
	d.mu.Unlock()
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
	d.mu.Unlock()
}
