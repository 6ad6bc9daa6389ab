package session

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/store"
)

// Adopt runs once the store is open: the persistent sessions an
// earlier run of this node owned (same node name, other instance) come back
// as disconnected sessions with their subscriptions, so messages published
// before their clients return are queued again. The messages queued in the
// earlier run are lost with it. A session another node claims meanwhile
// stays there: every adoption is a compare-and-set on the record.
func (s *Tracker) Adopt(ctx context.Context, st *store.Store) {
	w, err := st.Sessions.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		s.env.Log.Warn("sessions of an earlier run not restored", "error", err)
		return
	}
	defer w.Stop()
	adopted := 0
	for e := range w.Updates() {
		if e == nil {
			break // the bucket's current content is read
		}
		if s.adopt(ctx, e) {
			adopted++
		}
	}
	if adopted > 0 {
		s.env.Mesh.SyncInterest()
		s.env.Log.Info("restored sessions of an earlier run", "sessions", adopted)
	}
}

// adopt installs one record's session if it belongs to an earlier run of
// this node, is persistent and has not expired.
func (s *Tracker) adopt(ctx context.Context, e jetstream.KeyValueEntry) bool {
	rec := new(Record)
	if json.Unmarshal(e.Value(), rec) != nil || rec.Node != s.env.Node || rec.Instance == s.env.Instance || rec.Clean {
		return false
	}
	now := time.Now().Unix()
	if rec.Gone == 0 {
		rec.Gone = now // connected when the earlier run stopped: the expiry starts now
	}
	if rec.expired(now) {
		return false
	}
	if _, taken := s.env.Broker.Clients.Get(rec.Client); taken {
		return false // the client is back already
	}
	left := rec.Gone + int64(rec.Expiry) - now
	rec.Instance = s.env.Instance
	rev, err := s.reg.put(ctx, rec, e.Revision(), time.Duration(left)*time.Second+time.Minute)
	if err != nil {
		return false
	}
	cl := s.newDetached(rec.Client, rec.Version)
	// mochi expires a v5 session after its own interval and a 3.1.1 one
	// after the maximum: mark the detached client v5 with what is left.
	cl.Properties.ProtocolVersion = 5
	cl.Properties.Props.SessionExpiryInterval, cl.Properties.Props.SessionExpiryIntervalFlag = uint32(left), true
	if s.durable.on {
		s.durable.sync(ctx, rec.Client, subsMap(rec.Subs), false)
	}
	s.subscribeDetached(cl, rec.Subs)
	s.env.Broker.Clients.Add(cl)
	s.track(cl, *rec, rev)
	return true
}
