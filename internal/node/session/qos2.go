package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/node/store"
)

// Replicated QoS 2 state (sessions.durability replicated). Exactly once
// [MQTT-4.3.3] needs each side to remember, across a crash of the node, the
// step of the exchange it is at; both live in the key-value bucket
// mqlb_<cluster>_qos2 (mesh.replicas copies, entries at most
// sessions.max_expiry old):
//
//	o.<consumer>.<pos>  outgoing: the client sent PUBREC for the queued publish at
//	                    position pos (see posOf), so the node owes it a PUBREL,
//	                    never the PUBLISH again
//	i.<consumer>.<pid>  incoming: the client's PUBLISH pid was stored under this
//	                    mesh message id (also the stream's), with a digest of
//	                    the message; PUBREL pending, or released (see ReceivedID)
//
// Outgoing: the record is written before mochi answers the PUBREC with
// PUBREL. A node that reads the message again for the session after a
// crash (the anchor's floor passes it only after PUBCOMP) finds the record
// and sends PUBREL instead of the PUBLISH [MQTT-4.3.3-5]; the record is let
// go once the floor has passed it. Incoming: the
// record is written before the message is stored; a DUP PUBLISH whose node
// died before its PUBREC arrived is stored again under the same message id,
// which the stream discards as a duplicate, and a PUBREL for a packet id the
// node does not hold is completed with success when the record says the
// message was stored.

func releasedKey(id string, pos uint64) string {
	return "o." + ConsumerName(id) + "." + strconv.FormatUint(pos, 10)
}

func receivedKey(id string, pid uint16) string {
	return "i." + ConsumerName(id) + "." + strconv.FormatUint(uint64(pid), 10)
}

// qos2Bucket returns the QoS 2 state bucket, or nil when sessions are not
// replicated. While the store is unavailable (a JetStream leader election
// after a node died) it returns an error: a record that cannot be read is
// not known, which is not the same as absent.
func (d *Durable) qos2Bucket() (*store.Store, jetstream.KeyValue, error) {
	if !d.on {
		return nil, nil, nil
	}
	st, err := d.env.Store()
	if err != nil {
		return nil, nil, err
	}
	if st.QoS2 == nil {
		return nil, nil, store.ErrNotReady
	}
	return st, st.QoS2, nil
}

// Pubrec records that the client has a QoS 2 message from its queue
// (OnPacketRead) before mochi sends the PUBREL. The record is written in
// the background and the PUBREC handed to mochi once it is (InjectPacket):
// the client's other packets are not held up by the round trip. mochi gets
// in its place a PUBACK for packet id 0, which it ignores. While the record
// cannot be written (a JetStream leader election after a node died) the
// PUBREL waits; a connection that closes meanwhile gets the PUBLISH again
// when it resumes, and answers PUBREC again.
func (d *Durable) Pubrec(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.ReasonCode >= packets.ErrUnspecifiedError.Code {
		return pk
	}
	ds := d.get(cl.ID)
	if ds == nil {
		return pk
	}
	ds.mu.Lock()
	seq, ok := ds.inflight[pk.PacketID]
	ds.mu.Unlock()
	if !ok {
		return pk
	}
	d.env.WG.Add(1)
	go func() {
		defer d.env.WG.Done()
		if d.record(cl, releasedKey(cl.ID, seq), nil) {
			_ = d.env.Broker.InjectPacket(cl, pk)
		}
	}()
	return ignored
}

// record writes key until it is written (true), or cl's connection or the
// node ends.
func (d *Durable) record(cl *mqtt.Client, key string, value []byte) bool {
	for {
		st, kv, err := d.qos2Bucket()
		if err == nil && kv != nil {
			ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
			_, err := kv.Put(ctx, key, value)
			cancel()
			if err == nil {
				return true
			}
			d.env.Warn("QoS 2 state not recorded yet: retrying", "client_id", cl.ID, "error", st.Note(err))
		}
		select {
		case <-d.env.Ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
		if cl.Closed() {
			return false
		}
	}
}

// ignored is a packet mochi reads and does nothing with.
var ignored = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}}

// released reports whether the client already sent PUBREC for the queued
// message seq (checked for redeliveries only); an error means not known.
func (d *Durable) released(id string, seq uint64) (bool, error) {
	st, kv, err := d.qos2Bucket()
	if kv == nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
	defer cancel()
	_, found, err := readRecord(ctx, st, kv, releasedKey(id, seq))
	return found, st.Note(err)
}

// sendPubrel resumes a QoS 2 delivery the client has already received: the
// node owes it PUBREL, and mochi completes it on the PUBCOMP (ds.mu held).
func (d *Durable) sendPubrel(ds *dsession, cl *mqtt.Client, pid uint16, seq uint64) {
	ds.inflight[pid] = seq
	rel := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: pid}
	if cl.State.Inflight.Set(rel) {
		atomic.AddInt64(&d.env.Broker.Info.Inflight, 1)
	}
	_ = cl.WritePacket(rel)
}

// forgetReleased lets the record of a completed QoS 2 delivery expire.
func (d *Durable) forgetReleased(id string, seq uint64) {
	d.expire(releasedKey(id, seq))
}

// recordLinger is how long a record outlives the anchor's floor passing its
// message: a floor move confirmed can still be lost when the anchor's leader
// dies before replicating it, and the message then comes back (after an
// election, 3-5 s: internal/node/raftelect.go); it must still find the record.
const recordLinger = time.Minute

// expire replaces key's record with an empty one that JetStream removes
// after recordLinger (a per-message TTL, NATS 2.11+; purged at once
// without).
func (d *Durable) expire(key string) {
	st, kv, _ := d.qos2Bucket()
	if kv == nil { // left over: expires with the bucket's max age
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
		defer cancel()
		if !st.TTL {
			_ = kv.Purge(ctx, key) // left over: expires with the bucket's max age
			return
		}
		msg := &nats.Msg{Subject: "$KV." + kv.Bucket() + "." + key, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgTTLHeader, recordLinger.String())
		_, _ = st.JS.PublishMsg(ctx, msg)
	}()
}

// ReceivedID returns the mesh message id for a client's QoS 2 PUBLISH
// about to be stored: for a resent one (DUP) the id it was stored under
// before, if a node recorded one, so that the stream discards it as a
// duplicate; else a fresh one, recorded first. It fails when the record
// cannot be written.
//
// released is true for a DUP PUBLISH, the same message (topic and payload)
// as one whose exchange completed with a PUBREL under this packet id less
// than recordLinger ago: paho.mqtt.golang (1.5) keeps the PUBLISH, not the
// PUBREL it sent, and sends the PUBLISH again if the connection drops
// before the PUBCOMP. The protocol makes that a new message; the node
// answers it PUBREC and stores and delivers nothing (see Released).
//
// clientPID is the packet id the client used: the node may hand mochi the
// PUBLISH under another (node/pids.go), and a DUP resent to another node
// after a crash comes with the client's.
func (d *Durable) ReceivedID(cl *mqtt.Client, pk packets.Packet, clientPID uint16, fresh func() meshwire.MsgID) (id meshwire.MsgID, released bool, err error) {
	st, kv, err := d.qos2Bucket()
	if err != nil {
		return meshwire.MsgID{}, false, err // refused: the client sends it again
	}
	if kv == nil {
		return fresh(), false, nil
	}
	ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
	defer cancel()
	key := receivedKey(cl.ID, clientPID)
	digest := publishDigest(pk)
	if pk.FixedHeader.Dup {
		v, found, err := readRecord(ctx, st, kv, key)
		if err != nil {
			return meshwire.MsgID{}, false, st.Note(err)
		}
		if rec, ok := parseReceived(v); found && ok && (rec.digest == "" || rec.digest == digest) {
			return rec.id, rec.released, nil
		}
	}
	id = fresh()
	v := []byte(receivedRecord{id: id, digest: digest}.String())
	if _, err := kv.Put(ctx, key, v); err != nil {
		return meshwire.MsgID{}, false, st.Note(err)
	}
	d.received.keep(key, v)
	return id, false, nil
}

// receivedCache keeps the value of the received records this node wrote
// until their PUBREL, so that marking one released needs no read. An
// exchange whose PUBREL goes to another node leaves its entry behind: past
// maxReceivedCached entries the cache is emptied (a record not found in it
// is read).
type receivedCache struct {
	m sync.Map // key → []byte
	n atomic.Int64
}

const maxReceivedCached = 1 << 16

func (c *receivedCache) keep(key string, v []byte) {
	if _, had := c.m.Swap(key, v); !had && c.n.Add(1) > maxReceivedCached {
		c.m.Clear()
		c.n.Store(0)
	}
}

func (c *receivedCache) take(key string) []byte {
	if v, ok := c.m.LoadAndDelete(key); ok {
		c.n.Add(-1)
		return v.([]byte)
	}
	return nil
}

// receivedRecord is the value of an i.<consumer>.<pid> record: "<id>
// <digest>", and " r" once the client's PUBREL came. Records written before
// the digest was added hold the id alone.
type receivedRecord struct {
	id       meshwire.MsgID
	digest   string // publishDigest of the PUBLISH
	released bool
}

func (r receivedRecord) String() string {
	s := r.id.String() + " " + r.digest
	if r.released {
		s += " r"
	}
	return s
}

func parseReceived(v []byte) (receivedRecord, bool) {
	f := strings.Fields(string(v))
	var r receivedRecord
	if len(f) == 0 || r.id.UnmarshalText([]byte(f[0])) != nil || r.id.IsZero() {
		return r, false
	}
	if len(f) > 1 {
		r.digest = f[1]
	}
	r.released = len(f) > 2 && f[2] == "r"
	return r, true
}

// publishDigest tells a resent PUBLISH from another message under the same
// packet id: a hash of its topic and payload.
func publishDigest(pk packets.Packet) string {
	h := sha256.New()
	h.Write([]byte(pk.TopicName))
	h.Write([]byte{0})
	h.Write(pk.Payload)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// Pubrel completes a client's QoS 2 publish (OnPacketRead). When mochi does
// not hold the packet id (the PUBREC came from a node that died) but the
// record says the message was stored, mochi is given the id back so that
// it answers PUBCOMP success instead of 0x92 [MQTT-4.3.3-11].
// clientPID is the id the client used (pk may carry mochi's, see
// ReceivedID).
func (d *Durable) Pubrel(cl *mqtt.Client, pk packets.Packet, clientPID uint16) {
	st, kv, _ := d.qos2Bucket() // unavailable: mochi answers 0x92 for an id it does not hold; the message was stored before its PUBREC
	if kv == nil || !d.Persistent(cl) {
		return
	}
	key := receivedKey(cl.ID, clientPID)
	var v []byte
	if _, held := cl.State.Inflight.Get(pk.PacketID); !held {
		ctx, cancel := context.WithTimeout(d.env.Ctx, d.env.Timeout)
		var found bool
		var err error
		v, found, err = readRecord(ctx, st, kv, key)
		cancel()
		if !found {
			st.Note(err)
			return
		}
		rec := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pk.PacketID}
		if cl.State.Inflight.Set(rec) {
			atomic.AddInt64(&d.env.Broker.Info.Inflight, 1)
		}
	}
	if v == nil {
		v = d.received.take(key)
	} else {
		d.received.take(key)
	}
	d.expireReceived(key, v)
}

// expireReceived marks a received record released and lets it expire
// after recordLinger (see ReceivedID); v is its value when known.
func (d *Durable) expireReceived(key string, v []byte) {
	st, kv, _ := d.qos2Bucket()
	if kv == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(d.env.Ctx, 2*d.env.Timeout)
		defer cancel()
		if v == nil {
			v, _, _ = readRecord(ctx, st, kv, key)
		}
		rec, ok := parseReceived(v)
		if !ok || !st.TTL {
			_ = kv.Purge(ctx, key) // left over: expires with the bucket's max age
			return
		}
		rec.released = true
		msg := &nats.Msg{Subject: "$KV." + kv.Bucket() + "." + key, Header: nats.Header{}, Data: []byte(rec.String())}
		msg.Header.Set(jetstream.MsgTTLHeader, recordLinger.String())
		_, _ = st.JS.PublishMsg(ctx, msg)
	}()
}

// noMessageFound is JetStream's error code for a message get that found
// nothing (JSNoMessageFoundErr).
const noMessageFound = 10037

// readRecord reads key from its bucket's stream leader. A key-value Get
// may be answered by any replica (direct get), and one that has not yet
// applied a record written a moment ago on another node would have a QoS 2
// message sent again. A deleted or purged key is not found.
func readRecord(ctx context.Context, st *store.Store, kv jetstream.KeyValue, key string) (value []byte, found bool, err error) {
	bucket := kv.Bucket()
	req, err := json.Marshal(struct {
		Subject string `json:"last_by_subj"`
	}{"$KV." + bucket + "." + key})
	if err != nil {
		return nil, false, err
	}
	reply, err := st.JS.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return nil, false, err
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Data []byte `json:"data"`
			Hdrs []byte `json:"hdrs"`
		} `json:"message"`
	}
	switch err := json.Unmarshal(reply.Data, &resp); {
	case err != nil:
		return nil, false, err
	case resp.Error != nil && resp.Error.ErrCode == noMessageFound:
		return nil, false, nil // (a 404 "stream not found" is an error: not known)
	case resp.Error != nil:
		return nil, false, fmt.Errorf("read %s: %s", key, resp.Error.Description)
	case resp.Message == nil:
		return nil, false, fmt.Errorf("read %s: empty answer", key)
	case bytes.Contains(resp.Message.Hdrs, []byte("KV-Operation")):
		return nil, false, nil // deleted or purged
	}
	return resp.Message.Data, true, nil
}
