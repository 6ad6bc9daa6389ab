package session

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The DUP flag of a session's QoS 1/2 deliveries: 0 on a message's first
// transmission, 1 on every later one [MQTT-3.3.1-1].
//
// mochi v2.7.9 resends a resumed session's whole inflight store with DUP 1
// (ResendInflightMessages), the messages queued while the session was
// offline with them, for which that is the first transmission; and the
// node's flow control sends what it held back on resumption from the
// queued copy, with DUP 0, though it may have been sent on the connection
// before. The Tracker notes which of a session's packet ids have been
// written to its client since their message was queued, on any of its
// connections here (or, handed over, on the node before), and the node
// sets DUP from that as each PUBLISH is written (Writing).
//
// A note lives from the PUBLISH's first write until its packet id leaves
// the inflight store, or a new message is queued under it; a session's
// notes go with the session.

// sentIDs are the packet ids of one session's deliveries written to its
// client since they were queued.
type sentIDs struct {
	mu  sync.Mutex
	ids map[uint16]struct{}
}

// Writing returns the DUP flag of pk, a PUBLISH about to be written to cl
// (OnPacketEncode), and notes it written. A QoS 0 one keeps its own (mochi
// writes 0 [MQTT-3.3.1-2]). A delivery from a replicated session's queue
// not written here before keeps the DUP its reader gave it: it may have
// reached the client through another node or an earlier run (deliver).
func (s *Tracker) Writing(cl *mqtt.Client, pk packets.Packet) bool {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 {
		return pk.FixedHeader.Dup
	}
	v, ok := s.sent.Load(cl.ID)
	if !ok {
		v, _ = s.sent.LoadOrStore(cl.ID, &sentIDs{ids: map[uint16]struct{}{}})
	}
	sent := v.(*sentIDs)
	sent.mu.Lock()
	_, before := sent.ids[pk.PacketID]
	sent.ids[pk.PacketID] = struct{}{}
	sent.mu.Unlock()
	return before || pk.FixedHeader.Dup && s.durable.delivering(cl, pk.PacketID)
}

// unsent forgets that packet id pid of session id was written: its
// message left the inflight store, or a new one is queued under it.
func (s *Tracker) unsent(id string, pid uint16) {
	if v, ok := s.sent.Load(id); ok {
		sent := v.(*sentIDs)
		sent.mu.Lock()
		delete(sent.ids, pid)
		sent.mu.Unlock()
	}
}

// wasSent reports whether packet id pid of session id was written since
// its message was queued.
func (s *Tracker) wasSent(id string, pid uint16) bool {
	v, ok := s.sent.Load(id)
	if !ok {
		return false
	}
	sent := v.(*sentIDs)
	sent.mu.Lock()
	defer sent.mu.Unlock()
	_, ok = sent.ids[pid]
	return ok
}

// setSent replaces session id's notes by pids (a session installed here).
func (s *Tracker) setSent(id string, pids []uint16) {
	if len(pids) == 0 {
		s.sent.Delete(id)
		return
	}
	sent := &sentIDs{ids: make(map[uint16]struct{}, len(pids))}
	for _, pid := range pids {
		sent.ids[pid] = struct{}{}
	}
	s.sent.Store(id, sent)
}
