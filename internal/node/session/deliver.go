package session

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/node/store"
	"github.com/mqlb/mqlb/internal/topic"
)

// Pulling a durable session's consumer while its client is connected, and
// delivering each message with a packet id from its stream sequence.

// Start pulls id's consumer for the connection cl, in the background until
// it works. A client refused at its CONNACK (see refuse) is closed
// [MQTT-3.2.2-7].
func (d *Durable) Start(cl *mqtt.Client) {
	d.mu.Lock()
	_, failed := d.failed[cl]
	delete(d.failed, cl)
	d.nfailed.Store(int32(len(d.failed)))
	d.mu.Unlock()
	if failed {
		cl.Stop(packets.ErrServerUnavailable)
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
	meta, e, ok := d.decode(m)
	if !ok {
		return
	}
	seq := meta.Sequence.Stream
	pid := packetID(seq)
	release := false
	if meta.NumDelivered > 1 && e.QoS == 2 {
		var err error
		if release, err = d.released(ds.id, seq); err != nil {
			_ = m.NakWithDelay(durableAckWait) // not known now: neither PUBLISH nor PUBREL yet
			return
		}
	}
	ds.mu.Lock()
	if after, busy := d.repeat(ds, cl, pid, seq, m); busy {
		ds.mu.Unlock()
		if after != nil {
			after()
		}
		return
	}
	if release { // the client has it: it is owed the PUBREL, not the PUBLISH again
		d.sendPubrel(ds, cl, pid, dflight{seq: seq, msg: m})
		ds.mu.Unlock()
		return
	}
	pk, ok := d.packet(ds, cl, e, m, meta)
	if !ok {
		ds.mu.Unlock()
		_ = m.Ack()
		return
	}
	if !waitRoom(ds, cl) {
		ds.mu.Unlock()
		return // stopped meanwhile: the message is redelivered later
	}
	pk.PacketID = pid
	pk.FixedHeader.Dup = meta.NumDelivered > 1 // maybe seen before a crash: the client knows it by its id [MQTT-4.3.3-10]
	ds.inflight[pid] = dflight{seq: seq, msg: m}
	ds.mu.Unlock()
	if cl.State.Inflight.Set(pk) {
		atomic.AddInt64(&d.env.Broker.Info.Inflight, 1)
	}
	_ = cl.WritePacket(pk) // a closed connection gets it resent when it resumes
}

// decode reads a queued message's metadata and envelope; one that cannot
// be read is terminated (never redelivered).
func (d *Durable) decode(m jetstream.Msg) (*jetstream.MsgMetadata, *meshwire.Envelope, bool) {
	meta, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return nil, nil, false
	}
	e, err := meshwire.DecodeEnvelope(m.Data())
	if err != nil {
		d.env.Drop("malformed", 1)
		_ = m.Term()
		return nil, nil, false
	}
	return meta, e, true
}

// repeat handles, with ds.mu held, a message the session cannot take now:
// pulling stopped, the client has it already, or its packet id is taken.
// It returns what to do once the lock is released, and false when the
// message is to be delivered.
func (d *Durable) repeat(ds *dsession, cl *mqtt.Client, pid uint16, seq uint64, m jetstream.Msg) (after func(), busy bool) {
	if ds.cl != cl {
		return nil, true // stopped meanwhile: the message is redelivered later
	}
	if _, ok := ds.done[seq]; ok {
		return func() { go d.confirm(ds, seq, m) }, true // the client has it: the ack was lost
	}
	if f, ok := ds.inflight[pid]; ok {
		if f.seq == seq { // redelivered while the client has it
			ds.inflight[pid] = dflight{seq: seq, msg: m}
			return func() { _ = m.InProgress() }, true
		}
		return func() { _ = m.NakWithDelay(durableAckWait) }, true // the id is still taken
	}
	if _, taken := cl.State.Inflight.Get(pid); taken {
		return func() { _ = m.NakWithDelay(durableAckWait) }, true
	}
	return nil, false
}

// waitRoom waits, with ds.mu held, until cl has room under its Receive
// Maximum [MQTT-3.3.4-9]; false when pulling for cl stopped meanwhile.
func waitRoom(ds *dsession, cl *mqtt.Client) bool {
	for limit := sendWindow(cl); len(ds.inflight) >= limit && ds.cl == cl; {
		ds.room.Wait()
	}
	return ds.cl == cl
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
