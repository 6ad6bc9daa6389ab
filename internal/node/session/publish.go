package session

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/node/store"
)

// Storing publishes in the session queue stream (see durable.go).

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
//
// A publish being stored counts against the client's Receive Maximum
// [MQTT-3.3.4-7]: mochi counts it only once handed back, and a client
// could otherwise have any number stored at once without the DISCONNECT
// 0x93 it is owed.
func (d *Durable) StoreAsync(cl *mqtt.Client, pk packets.Packet) {
	cl.State.Inflight.DecreaseReceiveQuota() // given back just before mochi counts it again
	s := &storing{from: cl.ID, pk: pk, done: make(chan struct{})}
	d.handBack(cl, s) // in line before it can be settled
	id := meshwire.IDOf(&pk)
	if pk.FixedHeader.Qos == 2 && d.Persistent(cl) {
		// Stored alone, so that a resent PUBLISH is discarded (see qos2.go)
		// and nothing else with it.
		msg := d.message(cl.ID, pk, id)
		msg.Header.Set(jetstream.MsgIDHeader, id.String())
		w := d.send(msg)
		go func() {
			err := d.held(msg, w)
			if err == nil {
				d.stored.Add(1)
				d.storedMsgs.Add(1)
			}
			s.settle(err)
		}()
		return
	}
	s.env = envelope(pk, id)
	d.enqueue(d.subj.QueueTopic(pk.TopicName), s)
}

// Released answers a QoS 2 PUBLISH that ReceivedID found to be a resend of
// an exchange already completed (released) with PUBREC, in its turn among
// the client's publishes [MQTT-4.6.0-3], and stores and delivers nothing:
// the message went out the first time.
func (d *Durable) Released(cl *mqtt.Client, pk packets.Packet) {
	cl.State.Inflight.DecreaseReceiveQuota() // given back in handOne
	s := &storing{from: cl.ID, pk: pk, done: make(chan struct{}), released: true}
	d.handBack(cl, s)
	s.settle(nil)
}

// handBacks is a client's publishes being stored, in its order.
type handBacks struct {
	mu      sync.Mutex
	queue   []*storing
	running bool       // handBackLoop runs
	room    *sync.Cond // on mu: signalled as the queue shrinks (WaitBacklog)
}

// handBack queues s to be handed back to mochi once settled.
func (d *Durable) handBack(cl *mqtt.Client, s *storing) {
	v, ok := d.chains.Load(cl)
	if !ok {
		v, _ = d.chains.LoadOrStore(cl, new(handBacks))
	}
	hb := v.(*handBacks)
	hb.mu.Lock()
	hb.queue = append(hb.queue, s)
	start := !hb.running
	hb.running = true
	hb.mu.Unlock()
	if start {
		go d.handBackLoop(cl, hb)
	}
}

// handBackLoop hands cl's publishes back to mochi in their order as they
// are settled, those settled together in one go: their acknowledgements
// leave in one write (a batch settles all its publishes at once).
func (d *Durable) handBackLoop(cl *mqtt.Client, hb *handBacks) {
	take := func() *storing { // the head, if settled
		hb.mu.Lock()
		defer hb.mu.Unlock()
		if len(hb.queue) == 0 || !hb.queue[0].settled() {
			return nil
		}
		s := hb.queue[0]
		hb.queue[0] = nil
		hb.queue = hb.queue[1:]
		if hb.room != nil {
			hb.room.Broadcast()
		}
		return s
	}
	for {
		hb.mu.Lock()
		if len(hb.queue) == 0 {
			hb.queue, hb.running = nil, false // (the array would only grow)
			hb.mu.Unlock()
			return
		}
		first := hb.queue[0]
		hb.mu.Unlock()
		<-first.done
		cork := d.env.cork(cl)
		for s := take(); s != nil; s = take() {
			d.handOne(cl, s)
		}
		cork.Uncork()
	}
}

// handOne hands one settled publish back to mochi, or refuses it.
func (d *Durable) handOne(cl *mqtt.Client, s *storing) {
	cl.State.Inflight.IncreaseReceiveQuota()
	if s.err != nil {
		d.RefusePublish(cl, s.pk, s.err)
		return
	}
	if s.released { // mochi completes it on the PUBREL
		rec := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: s.pk.PacketID}
		if cl.State.Inflight.Set(rec) {
			atomic.AddInt64(&d.env.Broker.Info.Inflight, 1)
		}
		_ = cl.WritePacket(rec)
		return
	}
	pk := s.pk
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false // resolved on the way in
	if err := d.env.Broker.InjectPacket(cl, pk); err != nil {
		d.env.Warn("stored publish not delivered", "client_id", cl.ID, "error", err)
	}
}

func (d *Durable) RefusePublish(cl *mqtt.Client, pk packets.Packet, err error) {
	d.env.Warn("session queue unavailable: publish refused", "error", err)
	if cl.Properties.ProtocolVersion < 5 {
		cl.Stop(packets.ErrUnspecifiedError)
		return
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID,
		ReasonCode: packets.ErrUnspecifiedError.Code,
		Properties: packets.Properties{ReasonString: refusedReason(err)}}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	_ = cl.WritePacket(ack)
}

// refusedReason is the Reason String of a refused publish's PUBACK/PUBREC
// (sent unless the client asked for no problem information): what failed,
// never what was published.
func refusedReason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "not stored: the session queue did not confirm in time"
	case errors.Is(err, store.ErrNotReady), errors.Is(err, store.ErrDown):
		return "not stored: " + err.Error()
	default:
		return "not stored: session queue unavailable"
	}
}

// message is the stream message of a publish stored alone.
func (d *Durable) message(from string, pk packets.Packet, id meshwire.MsgID) *nats.Msg {
	msg := &nats.Msg{Subject: d.subj.QueueTopic(pk.TopicName), Header: nats.Header{}, Data: envelope(pk, id)}
	msg.Header.Set(fromHeader, from)
	return msg
}

// envelope is how a publish is kept in the queue stream.
func envelope(pk packets.Packet, id meshwire.MsgID) []byte {
	e := meshwire.Envelope{ID: id, Topic: pk.TopicName, QoS: pk.FixedHeader.Qos,
		Retain: pk.FixedHeader.Retain, Props: meshwire.Props(pk.Properties), Payload: pk.Payload}
	if pk.Properties.MessageExpiryInterval > 0 {
		e.HasExpiry, e.Expiry = true, pk.Properties.MessageExpiryInterval
	}
	return meshwire.AppendEnvelope(nil, &e)
}
