package session

import (
	"context"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// Acknowledging the consumer when the client acknowledges a delivery.

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
