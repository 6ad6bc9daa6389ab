package session

import (
	"context"
	"slices"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// The client's acknowledgements, and the anchor's floor that follows them.

// Acked notes that the client has a message from its queue: PUBACK for
// QoS 1, PUBCOMP for QoS 2 (qos2 true). The anchor's floor follows (in
// batches, see advance). A QoS 2 message whose PUBREC was recorded is
// never sent again as a PUBLISH (qos2.go): its record lasts until the floor
// has passed it.
func (d *Durable) Acked(cl *mqtt.Client, pid uint16, qos2 bool) {
	ds := d.get(cl.ID)
	if ds == nil {
		return
	}
	ds.mu.Lock()
	pos, ok := ds.inflight[pid]
	delete(ds.inflight, pid)
	ds.room.Broadcast()
	if ok && qos2 {
		ds.released = append(ds.released, pos)
	}
	ds.mu.Unlock()
	if ok {
		d.advance(ds, true)
	}
}

// floor is the highest stream sequence at or below which the client has
// every message it wants (ds.mu held).
func (ds *dsession) floor() uint64 {
	if ds.cursor == 0 {
		return ds.floorSent
	}
	first := ds.cursor // the first position the client may not have
	for _, pos := range ds.inflight {
		first = min(first, pos)
	}
	for _, pos := range ds.resend {
		first = min(first, pos)
	}
	return max(seqOf(first)-1, ds.floorSent) // (its message is not done, even past its first publish)
}

// advance moves the anchor's floor up to where the client is, in the
// background; paced, at most once per anchorEvery (each move is a raft
// operation of the anchor, and a crash resends at most what the client
// acknowledged since the last one).
func (d *Durable) advance(ds *dsession, paced bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.moving || ds.gone || ds.floor() <= ds.floorSent {
		return
	}
	ds.moving = true
	d.env.WG.Add(1)
	go d.move(ds, paced)
}

func (d *Durable) move(ds *dsession, paced bool) {
	defer d.env.WG.Done()
	defer func() {
		ds.mu.Lock()
		ds.moving = false
		ds.room.Broadcast() // HandOff waits for this
		ds.mu.Unlock()
	}()
	for {
		ds.mu.Lock()
		wait := time.Until(ds.lastMove.Add(anchorEvery))
		ds.mu.Unlock()
		if paced && wait > 0 {
			select {
			case <-d.env.Ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		ds.mu.Lock()
		target, gone := ds.floor(), ds.gone
		done := target <= ds.floorSent
		ds.lastMove = time.Now()
		ds.mu.Unlock()
		if gone || done {
			return
		}
		st, err := d.env.Store()
		if err == nil && st.Queue != nil {
			ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
			err = d.resetAnchor(ctx, st, ds.id, target+1)
			cancel()
			if err != nil {
				st.Note(err)
			}
		}
		if err != nil {
			// a leader election: the floor moves once it is over; meanwhile
			// a crash would resend more
			select {
			case <-d.env.Ctx.Done():
				return
			case <-time.After(readRetry):
			}
			continue
		}
		ds.mu.Lock()
		ds.floorSent = max(ds.floorSent, target)
		var forget []uint64
		ds.released = slices.DeleteFunc(ds.released, func(pos uint64) bool {
			if seqOf(pos) <= target {
				forget = append(forget, pos)
				return true
			}
			return false
		})
		ds.mu.Unlock()
		for _, pos := range forget {
			d.forgetReleased(ds.id, pos)
		}
	}
}

// DeliveryIDs returns the packet ids of cl's deliveries from its queue.
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

// delivering reports whether packet id pid is a delivery from cl's queue
// the client has not acknowledged.
func (d *Durable) delivering(cl *mqtt.Client, pid uint16) bool {
	ds := d.get(cl.ID)
	if ds == nil {
		return false
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	_, ok := ds.inflight[pid]
	return ok
}

// Floor returns the stream sequence id's anchor floor was last moved to
// on this node (tests).
func (d *Durable) Floor(id string) uint64 {
	ds := d.get(id)
	if ds == nil {
		return 0
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.floorSent
}
