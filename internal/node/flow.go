package node

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Outbound flow control [MQTT-3.3.4-9], done by the node because mochi
// v2.7.9's own deadlocks: once a client's send quota has been used up,
// mochi parks further QoS 1/2 messages in the client's inflight store
// (Expiry -1) and, after each packet it reads from the client, takes one
// back with Inflight.NextImmediate, which holds the inflight read lock and
// takes it again in GetAll. A delivery to that client from another goroutine
// (any publisher, the mesh) waiting for the write lock in between blocks
// both for good, and with them that publisher and mochi's housekeeping loop.
// (NextImmediate also deletes the message it sends from the inflight store,
// so its PUBACK is ignored and the quota is never given back.)
//
// For a client with a Receive Maximum the node keeps mochi's send quota at
// 0 with a non-zero maximum: mochi parks every QoS 1/2 message for it and,
// the quota never being above 0 when it looks, never calls NextImmediate.
// A pump goroutine per client sends the parked messages itself, in the
// order mochi stored them, while fewer than the Receive Maximum are
// unacknowledged. Other clients have no send quota at all (mochi's flow
// control off), as before.
type flow struct {
	n           *Node
	maxInflight uint16   // mqtt.max_inflight: mochi stores no more for a client
	windows     sync.Map // *mqtt.Client → *quota
	held        sync.Map // client id → *heldBack: kept from mochi's resend, parked once established
}

// heldBack is what resuming took out of a session's inflight store.
type heldBack struct {
	cl  *mqtt.Client // the connection resuming
	pks []packets.Packet
}

// quota is one client's send window and parked messages.
type quota struct {
	cl    *mqtt.Client
	limit int
	mu    sync.Mutex
	sent  map[uint16]struct{} // QoS 1/2 PUBLISHes written and not yet acknowledged
	fifo  []packets.Packet    // parked, in the order mochi stored them
	kick  chan struct{}       // wakes the pump
	done  chan struct{}       // closed when the connection ends
	pump  atomic.Uint32       // packet id the pump is writing (0: none)
}

// limited reports whether the node must hold cl to a Receive Maximum: v5
// clients that announced one below what mochi's inflight store holds
// anyway.
func (f *flow) limited(cl *mqtt.Client) bool {
	rm := cl.Properties.Props.ReceiveMaximum
	return cl.Properties.ProtocolVersion == 5 && rm > 0 && rm < f.maxInflight && !cl.Net.Inline && !isMesh(cl)
}

func (f *flow) get(cl *mqtt.Client) *quota {
	if v, ok := f.windows.Load(cl); ok {
		return v.(*quota)
	}
	return nil
}

// established pins cl's mochi send quota at 0 (all QoS 1/2 messages
// parked) and starts its pump; or turns mochi's flow control off for a
// client without a Receive Maximum.
func (f *flow) established(cl *mqtt.Client) {
	if !f.limited(cl) {
		cl.State.Inflight.ResetSendQuota(0)
		return
	}
	rm := int32(cl.Properties.Props.ReceiveMaximum)
	cl.State.Inflight.ResetSendQuota(rm)
	for range rm {
		cl.State.Inflight.DecreaseSendQuota()
	}
	q := &quota{cl: cl, limit: int(rm), sent: map[uint16]struct{}{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	// What mochi resent on resumption is in flight already.
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type == packets.Publish || pk.FixedHeader.Type == packets.Pubrel {
			q.sent[pk.PacketID] = struct{}{}
		}
	}
	if v, ok := f.held.Load(cl.ID); ok && v.(*heldBack).cl == cl && f.held.CompareAndDelete(cl.ID, v) {
		q.fifo = park(cl, v.(*heldBack).pks)
	}
	f.windows.Store(cl, q)
	go f.run(q)
}

// resuming keeps mochi from resending to a resuming client more than its
// Receive Maximum (OnSessionEstablish: mochi then copies the session's
// inflight store into the new connection and resends all of it, before
// the pump could hold any back): the QoS 1/2 messages beyond the window,
// oldest kept, are taken out of the store and parked once the session is
// established. Messages held back for an earlier connection that never got
// that far go back into the store first.
func (f *flow) resuming(cl *mqtt.Client, pk packets.Packet) {
	old, ok := f.n.broker.Clients.Get(cl.ID)
	if !ok || old == cl {
		return
	}
	if v, ok := f.held.LoadAndDelete(cl.ID); ok {
		for _, p := range v.(*heldBack).pks {
			old.State.Inflight.Set(p)
		}
	}
	if pk.Connect.Clean {
		return
	}
	pks := f.n.sessions.Queue(old)
	if old.Closed() {
		// Not while a live connection could still have a message
		// acknowledged: putting it back would send it again.
		restamp(old, pks)
	}
	if !f.limited(cl) {
		return
	}
	room := int(cl.Properties.Props.ReceiveMaximum)
	var held []packets.Packet
	for _, p := range pks {
		switch {
		case p.FixedHeader.Type != packets.Publish && p.FixedHeader.Type != packets.Pubrel:
		case room > 0 || p.FixedHeader.Type == packets.Pubrel:
			room--
		case old.State.Inflight.Delete(p.PacketID):
			held = append(held, p)
		}
	}
	if len(held) > 0 {
		f.held.Store(cl.ID, &heldBack{cl: cl, pks: held})
	}
}

// dropHeld takes out of what resuming held back for cl the messages keep
// refuses, and returns them (see dropUnreadable).
func (f *flow) dropHeld(cl *mqtt.Client, keep func(packets.Packet) bool) []packets.Packet {
	v, ok := f.held.Load(cl.ID)
	if !ok || v.(*heldBack).cl != cl {
		return nil
	}
	var kept, dropped []packets.Packet
	for _, p := range v.(*heldBack).pks {
		if keep(p) {
			kept = append(kept, p)
		} else {
			dropped = append(dropped, p)
		}
	}
	if len(dropped) == 0 || !f.held.CompareAndSwap(cl.ID, v, &heldBack{cl: cl, pks: kept}) {
		return nil // (swapped meanwhile: a later connection of the id put them back, and checks them)
	}
	return dropped
}

// restamp gives each of a resuming session's messages, in queue order, a
// second of its own, oldest first, all in the past, and puts them back in
// its inflight store: mochi resends the store sorted by Created second
// with an unstable sort, so messages queued within one second came back
// shuffled (21 of 50 out of order) [MQTT-4.6.0-2]. As session.install
// does for a session handed over from another node.
func restamp(cl *mqtt.Client, pks []packets.Packet) {
	created := time.Now().Unix() - int64(len(pks)) - 1
	for i := range pks {
		pks[i].Created = created
		created++
		cl.State.Inflight.Set(pks[i])
	}
}

// park puts held-back messages back into cl's inflight store as parked
// (Expiry -1, as mochi parks them) and returns them for the pump's queue.
func park(cl *mqtt.Client, pks []packets.Packet) []packets.Packet {
	for i, p := range pks {
		parked := p
		parked.Expiry = -1
		cl.State.Inflight.Set(parked)
		if p.Expiry < 0 {
			pks[i].Expiry = 0 // parked before: its own expiry is not known
		}
	}
	return pks
}

// ended stops cl's pump; what it had parked stays in mochi's inflight
// store, resent when the session resumes. What resuming held back for a
// connection that ended before it was established (its CONNACK failed: see
// unseen.go) goes back into its store: the session keeps it.
func (f *flow) ended(cl *mqtt.Client) {
	if v, ok := f.windows.LoadAndDelete(cl); ok {
		close(v.(*quota).done)
	}
	if v, ok := f.held.Load(cl.ID); ok && v.(*heldBack).cl == cl && f.held.CompareAndDelete(cl.ID, v) {
		for _, p := range v.(*heldBack).pks {
			cl.State.Inflight.Set(p)
		}
	}
}

// queued records a QoS 1/2 message mochi stores for cl (OnQosPublish).
func (f *flow) queued(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	q := f.get(cl)
	if q == nil {
		return
	}
	q.mu.Lock()
	q.fifo = append(q.fifo, pk)
	q.mu.Unlock()
	q.wake()
}

// sending sees every packet written to cl: a QoS 1/2 PUBLISH written by
// mochi rather than the pump (a resend, a durable delivery, or one mochi
// sent while an acknowledgement had just raised its quota) is counted as
// in flight and not sent again by the pump.
func (f *flow) sending(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 {
		return
	}
	q := f.get(cl)
	if q == nil || uint32(pk.PacketID) == q.pump.Load() {
		return
	}
	q.mu.Lock()
	q.sent[pk.PacketID] = struct{}{}
	for i := range q.fifo {
		if q.fifo[i].PacketID == pk.PacketID {
			q.fifo = append(q.fifo[:i], q.fifo[i+1:]...)
			break
		}
	}
	q.mu.Unlock()
	q.wake()
}

// read frees room on cl's acknowledgements: PUBACK, PUBCOMP, or PUBREC with
// an error code [MQTT-4.9.0-3].
func (f *flow) read(cl *mqtt.Client, pk packets.Packet) {
	switch pk.FixedHeader.Type {
	case packets.Puback, packets.Pubcomp:
	case packets.Pubrec:
		if pk.ReasonCode < packets.ErrUnspecifiedError.Code {
			return
		}
	default:
		return
	}
	q := f.get(cl)
	if q == nil {
		return
	}
	q.mu.Lock()
	delete(q.sent, pk.PacketID)
	q.mu.Unlock()
	q.wake()
}

// processed puts cl's mochi send quota back to 0 after an acknowledgement
// raised it (mochi then checks it, and calls NextImmediate if above 0).
func (f *flow) processed(cl *mqtt.Client, pk packets.Packet) {
	if pk.PacketID == 0 {
		return // not an acknowledgement mochi counted (see session.Durable.Pubrec)
	}
	switch pk.FixedHeader.Type {
	case packets.Puback, packets.Pubcomp, packets.Pubrel:
		if f.get(cl) != nil {
			cl.State.Inflight.DecreaseSendQuota()
		}
	}
}

func (q *quota) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// parkedRetry is how soon the pump looks again at a message mochi has
// stored but not yet marked parked (it does so right after OnQosPublish).
const parkedRetry = time.Millisecond

// run sends cl's parked messages while it has room.
func (f *flow) run(q *quota) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-q.kick:
		case <-retry.C:
		case <-q.done:
			return
		}
		if f.pumpOnce(q) {
			retry.Reset(parkedRetry)
		}
	}
}

// pumpOnce sends parked messages until the window is full or none is left;
// true if the next one is not parked yet.
func (f *flow) pumpOnce(q *quota) (later bool) {
	for {
		q.mu.Lock()
		if len(q.fifo) == 0 || len(q.sent) >= q.limit {
			q.mu.Unlock()
			return false
		}
		pk := q.fifo[0]
		cur, ok := q.cl.State.Inflight.Get(pk.PacketID)
		switch {
		case !ok || cur.FixedHeader.Type != packets.Publish || cur.Created != pk.Created:
			q.fifo = q.fifo[1:] // acknowledged, expired, dropped or moved meanwhile
			q.mu.Unlock()
			continue
		case cur.Expiry != -1:
			q.mu.Unlock()
			return true // mochi has not marked it parked yet (or is writing it)
		}
		q.fifo = q.fifo[1:]
		if pk.Expiry > 0 && pk.Expiry < time.Now().Unix() { // [MQTT-3.3.2-5]
			q.mu.Unlock()
			if q.cl.State.Inflight.Delete(pk.PacketID) {
				atomic.AddInt64(&f.n.broker.Info.Inflight, -1)
				f.n.sessions.Settled(q.cl, pk, true)
			}
			f.n.metrics.dropped("message_expired")
			continue
		}
		q.sent[pk.PacketID] = struct{}{}
		q.mu.Unlock()
		q.cl.State.Inflight.Set(pk) // no longer parked: its own expiry again
		q.pump.Store(uint32(pk.PacketID))
		err := q.cl.WritePacket(pk)
		q.pump.Store(0)
		if err != nil {
			return false // closed: the session resends it when it resumes
		}
	}
}

// holding reports how many of cl's messages are parked.
func (f *flow) holding(cl *mqtt.Client) int {
	q := f.get(cl)
	if q == nil {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.fifo)
}
