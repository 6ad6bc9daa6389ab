package node

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Outbound flow control [MQTT-3.3.4-9], done by the node because mochi
// v2.7.9's own deadlocks: once a client's send quota has been used up,
// mochi parks further QoS 1/2 messages in the client's inflight store and,
// after each packet it reads from the client, takes one back with
// Inflight.NextImmediate, which holds the inflight read lock and takes it
// again in GetAll. A delivery to that client from another goroutine (any
// publisher, the mesh) waiting for the write lock in between blocks both
// for good, and with them that publisher and mochi's housekeeping loop.
// The node keeps mochi's send quota at 0 (so NextImmediate is never
// called) and instead holds back the client's write loop: a QoS 1/2
// PUBLISH is written once fewer than the client's Receive Maximum are
// unacknowledged. Messages wait in mochi's outbound queue meanwhile, in
// order, bounded by mqtt.max_inflight and mochi's pending writes.
//
// The write loop must never wait with written bytes still in mochi's
// output buffer (the client would never see, so never acknowledge, them):
// the broker runs with a one-byte write buffer, which makes every write go
// straight to the connection (see newBroker).
type flow struct {
	maxInflight uint16   // mqtt.max_inflight: mochi stores no more for a client
	windows     sync.Map // *mqtt.Client → *quota
}

// quota is one client's send quota.
type quota struct {
	limit int
	mu    sync.Mutex
	sent  map[uint16]struct{} // QoS 1/2 PUBLISHes written and not yet acknowledged
	live  bool                // session established: writes wait for room from now on
	held  int                 // writers waiting for room
	room  chan struct{}       // closed (and replaced) when an acknowledgement frees room
	done  chan struct{}       // closed when the connection ends
}

// limited reports whether the node must hold cl to a Receive Maximum: v5
// clients that announced one below what mochi's inflight store holds
// anyway.
func (f *flow) limited(cl *mqtt.Client) bool {
	rm := cl.Properties.Props.ReceiveMaximum
	return cl.Properties.ProtocolVersion == 5 && rm > 0 && rm < f.maxInflight && !cl.Net.Inline && !isMesh(cl)
}

// get returns cl's window, creating it on first use.
func (f *flow) get(cl *mqtt.Client) *quota {
	if w, ok := f.windows.Load(cl); ok {
		return w.(*quota)
	}
	w := &quota{limit: int(cl.Properties.Props.ReceiveMaximum), sent: map[uint16]struct{}{},
		room: make(chan struct{}), done: make(chan struct{})}
	got, _ := f.windows.LoadOrStore(cl, w)
	return got.(*quota)
}

// established lets writes to cl wait for room from now on. Messages resent
// on resumption (before this) are counted but not held back: they are
// written by the goroutine that goes on to read the acknowledgements.
func (f *flow) established(cl *mqtt.Client) {
	if !f.limited(cl) {
		return
	}
	w := f.get(cl)
	w.mu.Lock()
	w.live = true
	w.mu.Unlock()
}

// ended releases a writer waiting for cl's acknowledgements.
func (f *flow) ended(cl *mqtt.Client) {
	if w, ok := f.windows.LoadAndDelete(cl); ok {
		close(w.(*quota).done)
	}
}

// sending is called for every packet mochi writes to cl; a QoS 1/2 PUBLISH
// waits until cl has room for it.
func (f *flow) sending(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || !f.limited(cl) {
		return
	}
	w := f.get(cl)
	for {
		w.mu.Lock()
		_, again := w.sent[pk.PacketID] // a resend uses no more room
		if again || len(w.sent) < w.limit || !w.live {
			w.sent[pk.PacketID] = struct{}{}
			w.mu.Unlock()
			return
		}
		room := w.room
		w.held++
		w.mu.Unlock()
		select {
		case <-room:
		case <-w.done:
		}
		w.mu.Lock()
		w.held--
		w.mu.Unlock()
		select {
		case <-w.done:
			return // the write fails: the connection is closed
		default:
		}
	}
}

// holding reports how many of cl's writes wait for room.
func (f *flow) holding(cl *mqtt.Client) int {
	v, ok := f.windows.Load(cl)
	if !ok {
		return 0
	}
	w := v.(*quota)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.held
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
	v, ok := f.windows.Load(cl)
	if !ok {
		return
	}
	w := v.(*quota)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, had := w.sent[pk.PacketID]; had {
		delete(w.sent, pk.PacketID)
		close(w.room)
		w.room = make(chan struct{})
	}
}
