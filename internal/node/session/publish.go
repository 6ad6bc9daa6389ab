package session

import (
	"context"
	"time"

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
		cl.State.Inflight.IncreaseReceiveQuota()
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
	msg := &nats.Msg{Subject: d.subj.QueueTopic(pk.TopicName), Header: nats.Header{}, Data: meshwire.AppendEnvelope(nil, &e)}
	msg.Header.Set("Mqlb-From", from)
	return msg
}
