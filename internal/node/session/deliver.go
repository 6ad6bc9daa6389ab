package session

import (
	"context"
	"errors"
	"maps"
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

// Reading a durable session's messages from the queue stream while its
// client is connected, and delivering each with a packet id from its
// stream sequence.

// Start reads id's queue for the connection cl, in the background. A
// client refused at its CONNACK (see refuse) is closed [MQTT-3.2.2-7].
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
	ds.stopLocked()
	stop := make(chan struct{})
	ds.cl, ds.stopCh = cl, stop
	ds.mu.Unlock()
	d.env.WG.Add(1)
	go d.read(ds, cl, stop)
}

const (
	readPoll   = 5 * time.Second        // a connected session's queue is read at least this often
	readRetry  = 250 * time.Millisecond // after an error
	replicaLag = 5 * time.Millisecond   // first wait when woken but the replica had nothing yet
	lagTries   = 4                      // 5, 10, 20, 40 ms
)

// read delivers ds's queue to cl until reading for cl stops. It reads when
// woken (a publish for the session reached this node: the stream has it,
// though the nearest replica may be a moment behind) and every readPoll
// (a publish whose live copy was lost: its node died after storing it).
//
// A wake that stands for one publish ends at a read that finds something,
// or, after lagTries empty reads, at an empty one checked with the leader.
// A coalesced wake (see poke) stands for more than one: the replica's
// answer may hold the first and not the others, so it ends only at an
// empty read checked with the leader (owed). After a read that found
// something it waits as for the replica's lag, but a new wake ends that
// wait at once (the publishes of a steady flow are not held back) and
// starts the lag's count again (the leader is asked only once the
// replica has had its time for the latest publish, and a read that finds
// something delivers anyway). After an empty read, the wait is the lag's
// as for any wake, not ended by a new one: a replica that answers nothing
// reaches the leader's check within 75 ms, however often publishes come.
func (d *Durable) read(ds *dsession, cl *mqtt.Client, stop chan struct{}) {
	defer d.env.WG.Done()
	// wait waits t, or less when wakeable and a wake comes (taken: took
	// must follow); false once reading stops.
	wait := func(t time.Duration, wakeable bool) (took, ok bool) {
		var wake chan struct{}
		if wakeable {
			wake = ds.wake
		}
		timer := time.NewTimer(t)
		defer timer.Stop()
		select {
		case <-stop:
			return false, false
		case <-d.env.Ctx.Done():
			return false, false
		case <-timer.C:
			return false, true
		case <-wake:
			return true, true
		}
	}
	tries := lagTries // reads left for a message the replica may not have yet
	woken := false    // since the last idle wait: a publish for the session is in the queue
	owed := false     // a coalesced wake was taken: reading goes on to an empty answer the leader confirms
	for {
		st, err := d.position(ds, cl)
		found := false
		if err == nil {
			// The last read for a wake checks an empty answer with the leader (readQueue).
			found, err = d.readOnce(ds, cl, st, woken && tries == lagTries)
		}
		switch {
		case errors.Is(err, errStopped):
			return
		case err != nil:
			d.env.Warn("session queue not readable yet: retrying", "client_id", cl.ID, "error", err)
			if _, ok := wait(readRetry, false); !ok {
				return
			}
			continue
		case found && owed && tries < lagTries:
			// What the wake stood for may not all have been in the answer:
			// read again once the replica may have caught up.
			again, ok := wait(replicaLag<<tries, true)
			if !ok {
				return
			}
			if again {
				ds.took() // owed already: the leader's check to come covers it
				tries = 0
			} else {
				tries++
			}
			continue
		case !found && tries < lagTries:
			if _, ok := wait(replicaLag<<tries, false); !ok {
				return
			}
			tries++
			continue
		case found && owed:
			continue // (checked with the leader if empty): on until it confirms nothing more
		}
		owed = false
		idle := time.NewTimer(readPoll)
		select {
		case <-stop:
			idle.Stop()
			return
		case <-d.env.Ctx.Done():
			idle.Stop()
			return
		case <-ds.wake:
			tries, woken, owed = 0, true, ds.took()
		case <-idle.C:
			tries, woken = lagTries, false
		}
		idle.Stop()
	}
}

var errStopped = errors.New("stopped")

// position makes sure ds's anchor is written and its reader has a cursor.
func (d *Durable) position(ds *dsession, cl *mqtt.Client) (*store.Store, error) {
	st, err := d.env.Store()
	if err != nil {
		return nil, err
	}
	if st.Queue == nil {
		return nil, store.ErrNotReady
	}
	ds.mu.Lock()
	synced, cursor, touched := ds.synced, ds.cursor, ds.touched
	ds.mu.Unlock()
	ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
	defer cancel()
	if !synced && !d.write(ctx, ds) {
		return nil, errors.New("session queue not written")
	}
	if time.Since(touched) > (d.env.MaxExpiry+time.Minute)/4 {
		d.touch(st, ds.id)
		ds.mu.Lock()
		ds.touched = time.Now()
		ds.mu.Unlock()
	}
	if cursor != 0 {
		return st, nil
	}
	next, pending, last, err := d.anchorPosition(ctx, st, ds.id)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		ds.mu.Lock()
		ds.synced = false // expired or never written: write it again
		ds.mu.Unlock()
	}
	if err != nil {
		return nil, st.Note(err)
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.cl != cl {
		return nil, errStopped
	}
	if ds.cursor == 0 {
		ds.cursor, ds.high, ds.floorSent = posOf(next, 0), posOf(last+1, 0)-1, next-1
		ds.pending = pending > 0
	}
	return st, nil
}

// readOnce reads what the queue has for ds from its cursor, as far as cl
// has room, and delivers it; found reports whether there was anything.
// expect: a message is in the queue for ds (see readQueue).
func (d *Durable) readOnce(ds *dsession, cl *mqtt.Client, st *store.Store, expect bool) (found bool, err error) {
	if err := d.countOver(ds, st); err != nil {
		return false, err
	}
	if err := d.resendHanded(ds, cl, st); err != nil {
		return false, err
	}
	for check := expect; ; {
		ds.mu.Lock()
		room := waitRoom(ds, cl)
		from, subject, pending := ds.cursor, d.readSubject(ds), ds.pending
		ds.mu.Unlock()
		if room == 0 {
			return found, errStopped
		}
		ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
		msgs, more, err := d.readQueue(ctx, st, subject, seqOf(from), room, check || pending)
		cancel()
		if err != nil {
			return found, st.Note(err)
		}
		if pending {
			ds.mu.Lock()
			ds.pending = false // read, or confirmed with the leader
			ds.mu.Unlock()
		}
		check = len(msgs) == 1 && msgs[0].leader // the replica lacked it: it may lack what follows
		found = found || len(msgs) > 0
		cork := d.env.cork(cl) // the PUBLISHes of one read leave in one write
		for _, m := range msgs {
			if err := d.deliverMsg(ds, cl, m, cork); err != nil {
				cork.Uncork()
				return found, err
			}
		}
		cork.Uncork()
		if len(msgs) < room && !more {
			return found, nil
		}
	}
}

// resendHanded sends first the deliveries the node that handed the session
// over had in flight (see Position).
func (d *Durable) resendHanded(ds *dsession, cl *mqtt.Client, st *store.Store) error {
	for {
		ds.mu.Lock()
		if len(ds.resend) == 0 {
			ds.mu.Unlock()
			return nil
		}
		room := waitRoom(ds, cl)
		pos, subject := ds.resend[0], d.readSubject(ds)
		ds.mu.Unlock()
		if room == 0 {
			return errStopped
		}
		ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
		msgs, _, err := d.readQueue(ctx, st, subject, seqOf(pos), 1, true)
		cancel()
		if err != nil {
			return st.Note(err)
		}
		if len(msgs) == 1 && msgs[0].seq == seqOf(pos) {
			items, _ := msgs[0].items()
			for _, it := range items {
				if it.pos == pos {
					if err := d.deliver(ds, cl, it, noCork{}); err != nil {
						return err
					}
				}
			}
		} // else gone meanwhile (expired, or no longer wanted)
		ds.mu.Lock()
		if len(ds.resend) > 0 && ds.resend[0] == pos {
			ds.resend = ds.resend[1:]
		}
		ds.mu.Unlock()
	}
}

// readSubject is the one subject ds's reader follows: its filter's, or one
// covering its filters (ds.mu held).
func (d *Durable) readSubject(ds *dsession) string {
	subjects := make([]string, 0, len(ds.filters))
	for _, f := range ds.filters {
		subjects = append(subjects, d.subj.QueueFilter(f.Filter))
	}
	if len(subjects) == 0 {
		return d.subj.All()
	}
	return meshwire.Covering(subjects)
}

// stop ends reading for cl (nil: whatever connection).
func (d *Durable) stop(ds *dsession, cl *mqtt.Client) {
	ds.mu.Lock()
	if cl != nil && ds.cl != cl {
		ds.mu.Unlock()
		return
	}
	was := ds.cl != nil
	ds.stopLocked()
	ds.mu.Unlock()
	if was {
		d.advance(ds, false) // the floor where the client left it
		if st, err := d.env.Store(); err == nil && st.Queue != nil {
			d.touch(st, ds.id) // the inactive threshold counts from now
		}
	}
}

func (ds *dsession) stopLocked() {
	defer ds.room.Broadcast()
	if ds.stopCh != nil {
		close(ds.stopCh)
	}
	ds.cl, ds.stopCh = nil, nil
}

// Position is where a session's queue stands on the node giving it up:
// the next message to read, and the deliveries before it the client has
// not acknowledged. The new owner starts there, so that a client that
// acknowledged out of order gets nothing twice.
type Position struct {
	Cursor uint64   `json:"cursor_pos"`           // a position (posOf), as Resend's
	Resend []uint64 `json:"resend_pos,omitempty"` // (renamed with batches: a node before them reads from the floor)
}

// HandOff gives id's session up to another node: reading stops, the
// anchor's floor is moved to below the first delivery the client has not
// acknowledged (a new owner that did not get the returned position, or a
// crash of the new owner, resends from there), and the exact position is
// returned for the new owner (nil: none here).
func (d *Durable) HandOff(id string) *Position {
	ds := d.get(id)
	if ds == nil {
		return nil
	}
	d.stop(ds, nil)
	ds.mu.Lock()
	for ds.moving {
		ds.room.Wait()
	}
	ds.gone = true
	next := ds.floor() + 1
	sent := ds.floorSent
	var pos *Position
	if ds.cursor != 0 {
		pos = &Position{Cursor: ds.cursor, Resend: append(slices.Collect(maps.Values(ds.inflight)), ds.resend...)}
		slices.Sort(pos.Resend) // oldest first [MQTT-4.6.0-1]
	}
	clear(ds.inflight)
	ds.mu.Unlock()
	d.drop(id)
	if next-1 > sent {
		if st, err := d.env.Store(); err == nil && st.Queue != nil {
			ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
			defer cancel()
			if err := d.resetAnchor(ctx, st, id, next); err != nil {
				st.Note(err)
				d.env.Warn("session queue: floor not moved at handoff (a crash would resend more)", "client_id", id, "error", err)
			}
		}
	}
	return pos
}

// resumeAt starts id's reader where the node that gave the session up
// left it (nil: from the anchor's floor).
func (d *Durable) resumeAt(id string, pos *Position) {
	ds := d.get(id)
	if ds == nil || pos == nil || pos.Cursor == 0 {
		return
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.cursor == 0 {
		ds.cursor, ds.high, ds.resend = pos.Cursor, pos.Cursor-1, slices.Clone(pos.Resend)
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

// packetID is a delivery's packet id: from its queue position, so that a
// message redelivered by another node after a crash keeps it.
func packetID(pos uint64) uint16 { return uint16((pos-1)%65535) + 1 }

// deliverMsg delivers the publishes of one queue message from the cursor
// on. It fails when the rest must be read again later.
func (d *Durable) deliverMsg(ds *dsession, cl *mqtt.Client, m qmsg, cork Cork) error {
	items, err := m.items()
	if err != nil {
		d.env.Drop("malformed", 1)
		d.passed(ds, cl, posOf(m.seq+1, 0))
		return nil
	}
	ds.mu.Lock()
	cursor := ds.cursor
	ds.mu.Unlock()
	for _, it := range items {
		if it.pos < cursor {
			continue // delivered before this read (the rest of a batch)
		}
		if err := d.deliver(ds, cl, it, cork); err != nil {
			return err
		}
	}
	return nil
}

// deliver sends one queued publish to the client (or drops it), and moves
// the cursor past it. It fails when the publish must be read again later.
// cork is uncorked before anything that waits.
func (d *Durable) deliver(ds *dsession, cl *mqtt.Client, it item, cork Cork) error {
	e, err := meshwire.DecodeEnvelope(it.data)
	if err != nil {
		d.env.Drop("malformed", 1)
		d.passed(ds, cl, it.next)
		return nil
	}
	pid := packetID(it.pos)
	ds.mu.Lock()
	again := it.pos <= ds.high // may have reached the client before
	if ds.over > 0 {
		ds.over--
		ds.mu.Unlock()
		d.env.Drop("offline_queue_full", 1)
		d.passed(ds, cl, it.next)
		return nil
	}
	ds.mu.Unlock()
	release := false
	if again && e.QoS == 2 {
		cork.Uncork() // (a round trip to the store)
		if release, err = d.released(ds.id, it.pos); err != nil {
			return err // not known now: neither PUBLISH nor PUBREL yet
		}
	}
	ds.mu.Lock()
	if ds.cl != cl {
		ds.mu.Unlock()
		return errStopped
	}
	// A batch may hold more than the room the read was sized for
	// [MQTT-3.3.4-9]; and the id may still be used by an older delivery.
	uncorked := false
	for len(ds.inflight) >= sendWindow(cl) || taken(ds, cl, pid) {
		if !uncorked { // the client acknowledges only what it has
			ds.mu.Unlock()
			cork.Uncork()
			ds.mu.Lock()
			uncorked = true
			if ds.cl != cl {
				ds.mu.Unlock()
				return errStopped
			}
			continue
		}
		ds.room.Wait()
		if ds.cl != cl {
			ds.mu.Unlock()
			return errStopped
		}
	}
	if release { // the client has it: it is owed the PUBREL, not the PUBLISH again
		d.sendPubrel(ds, cl, pid, it.pos)
		ds.cursor = max(ds.cursor, it.next)
		ds.mu.Unlock()
		return nil
	}
	pk, ok := d.packet(ds, cl, e, it)
	if !ok {
		ds.mu.Unlock()
		d.passed(ds, cl, it.next)
		return nil
	}
	pk.PacketID = pid
	pk.FixedHeader.Dup = again // the client knows it by its id [MQTT-4.3.3-10]
	ds.inflight[pid] = it.pos
	ds.cursor = max(ds.cursor, it.next)
	ds.mu.Unlock()
	if cl.State.Inflight.Set(pk) {
		atomic.AddInt64(&d.env.Broker.Info.Inflight, 1)
	}
	_ = cl.WritePacket(pk) // a closed connection gets it resent when it resumes
	return nil
}

// passed moves the cursor to next, past a publish the client does not get.
func (d *Durable) passed(ds *dsession, cl *mqtt.Client, next uint64) {
	ds.mu.Lock()
	if ds.cl == cl && next > ds.cursor {
		ds.cursor = next
	}
	ds.mu.Unlock()
	d.advance(ds, true)
}

// taken reports whether packet id pid is in use on cl's session (ds.mu
// held).
func taken(ds *dsession, cl *mqtt.Client, pid uint16) bool {
	if _, ok := ds.inflight[pid]; ok {
		return true
	}
	_, ok := cl.State.Inflight.Get(pid)
	return ok
}

// waitRoom waits, with ds.mu held, until cl has room under its Receive
// Maximum [MQTT-3.3.4-9], and returns how many more deliveries it may
// have; 0 when reading for cl stopped meanwhile.
func waitRoom(ds *dsession, cl *mqtt.Client) int {
	limit := sendWindow(cl)
	for len(ds.inflight) >= limit && ds.cl == cl {
		ds.room.Wait()
	}
	if ds.cl != cl {
		return 0
	}
	return limit - len(ds.inflight)
}

// packet builds the PUBLISH of a queued message for cl, or false when it is
// not for cl (no matching subscription any more, NoLocal, not readable by
// cl's ACL, expired).
func (d *Durable) packet(ds *dsession, cl *mqtt.Client, e *meshwire.Envelope, it item) (packets.Packet, bool) {
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
	if !found || (noLocal && it.from == cl.ID) {
		return packets.Packet{}, false
	}
	if d.env.MayRead != nil && !d.env.MayRead(cl, e.Topic) {
		return packets.Packet{}, false
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(e.QoS, qos),
			Retain: e.Retain && rap && cl.Properties.ProtocolVersion == 5},
		TopicName: e.Topic, Payload: e.Payload, Properties: e.Props,
		Created: time.Now().Unix(), ProtocolVersion: cl.Properties.ProtocolVersion,
	}
	if e.HasExpiry {
		left := int64(e.Expiry) - int64(time.Since(it.stored)/time.Second)
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
