package session

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/store"
)

// Record is a client's entry in the session registry: which node owns
// the client's session (its connection, or its state while disconnected),
// and enough to restore the session if that node is gone. Every change is a
// compare-and-set on the key's revision, so two nodes cannot both take a
// client over. The queued messages themselves stay on the owning node.
type Record struct {
	Client   string      `json:"client"`
	Node     string      `json:"node"`
	Instance string      `json:"instance"`        // the owner's process: a restarted node is a new instance
	Clean    bool        `json:"clean,omitempty"` // the session ends with the connection
	Expiry   uint32      `json:"expiry,omitempty"`
	Version  byte        `json:"version"`
	Since    int64       `json:"since"`          // connected at, unix seconds
	Gone     int64       `json:"gone,omitempty"` // disconnected at; 0 while connected
	Subs     []subRecord `json:"subs,omitempty"`
}

// expired reports whether a disconnected session's expiry has passed.
func (r *Record) expired(now int64) bool {
	return r.Gone > 0 && (r.Clean || r.Gone+int64(r.Expiry) < now)
}

type subRecord struct {
	Filter string `json:"f"`
	QoS    byte   `json:"q"`
	NL     bool   `json:"nl,omitempty"`
	RAP    bool   `json:"rap,omitempty"`
	RH     byte   `json:"rh,omitempty"`
	ID     int    `json:"id,omitempty"`
}

func subRecords(subs map[string]packets.Subscription) []subRecord {
	out := make([]subRecord, 0, len(subs))
	for _, s := range subs {
		out = append(out, subRecord{Filter: s.Filter, QoS: s.Qos, NL: s.NoLocal, RAP: s.RetainAsPublished,
			RH: s.RetainHandling, ID: s.Identifier})
	}
	return out
}

func (r subRecord) subscription() packets.Subscription {
	s := packets.Subscription{Filter: r.Filter, Qos: r.QoS, NoLocal: r.NL, RetainAsPublished: r.RAP,
		RetainHandling: r.RH, Identifier: r.ID}
	if r.ID > 0 {
		s.Identifiers = map[string]int{r.Filter: r.ID}
	}
	return s
}

// EndsWithConnection reports whether a client's session ends when its
// connection does: MQTT 3.1.1 clean session 1 [MQTT-3.1.2-6], v5 session
// expiry 0 [MQTT-3.1.2-23].
func EndsWithConnection(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}

// registry reads and writes records in the sessions bucket.
type registry struct {
	live func() (*store.Store, error) // the store while it is usable
}

func sessionKey(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// get reads id's record. fresh reads it from the bucket's leader (see
// store.LeaderGet): after a compare-and-set conflict, when the replica that
// answered may be behind. A removed record is nil, with the revision of its
// marker when read from the leader (0 otherwise).
func (g registry) get(ctx context.Context, id string, fresh bool) (*Record, uint64, error) {
	st, err := g.live()
	if err != nil {
		return nil, 0, err
	}
	var val []byte
	var rev uint64
	if fresh {
		val, rev, err = st.LeaderGet(ctx, st.Sessions, sessionKey(id))
	} else {
		var e jetstream.KeyValueEntry
		if e, err = st.Sessions.Get(ctx, sessionKey(id)); err == nil {
			val, rev = e.Value(), e.Revision()
		}
	}
	st.Note(err)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, rev, nil // a removed key's marker, from the leader: a write goes over it at rev
	}
	if err != nil {
		return nil, 0, err
	}
	rec := new(Record)
	if err := json.Unmarshal(val, rec); err != nil {
		return nil, rev, nil // unreadable: treat as absent, but keep the revision for CAS
	}
	return rec, rev, nil
}

// put writes rec if the key is still at rev (0: absent or removed). ttl > 0
// lets the bucket drop the record by itself (a disconnected session's expiry).
func (g registry) put(ctx context.Context, rec *Record, rev uint64, ttl time.Duration) (uint64, error) {
	st, err := g.live()
	if err != nil {
		return 0, err
	}
	newRev, err := g.write(ctx, st, rec, rev, ttl)
	return newRev, st.Note(err)
}

func (g registry) write(ctx context.Context, st *store.Store, rec *Record, rev uint64, ttl time.Duration) (uint64, error) {
	val, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	key := sessionKey(rec.Client)
	ttl = min(ttl, 100*365*24*time.Hour)
	switch {
	case rev == 0 && ttl > 0 && st.TTL:
		return st.Sessions.Create(ctx, key, val, jetstream.KeyTTL(ttl))
	case rev == 0:
		return st.Sessions.Create(ctx, key, val)
	case ttl > 0 && st.TTL:
		msg := &nats.Msg{Subject: "$KV." + st.Sessions.Bucket() + "." + key, Data: val}
		ack, err := st.JS.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
		if err != nil {
			return 0, err
		}
		return ack.Sequence, nil
	default:
		return st.Sessions.Update(ctx, key, val, rev)
	}
}

// remove deletes the record if it is still at rev.
func (g registry) remove(ctx context.Context, id string, rev uint64) error {
	st, err := g.live()
	if err != nil {
		return err
	}
	opts := []jetstream.KVDeleteOpt{jetstream.LastRevision(rev)}
	if st.TTL {
		opts = append(opts, jetstream.PurgeTTL(store.MarkerTTL))
	}
	return st.Note(st.Sessions.Purge(ctx, sessionKey(id), opts...))
}
