package session

import (
	"context"
	"encoding/json"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
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
	return s.adoptRecord(ctx, rec, e.Revision())
}

// adoptRecord installs rec's session here as a disconnected one, if it has
// not expired and its client is not here already, with a compare-and-set
// on the record at rev.
func (s *Tracker) adoptRecord(ctx context.Context, rec *Record, rev uint64) bool {
	now := time.Now().Unix()
	if rec.Gone == 0 {
		rec.Gone = now // connected when the earlier run stopped: the expiry starts now
	}
	if rec.expired(now) {
		return false
	}
	done, ok := s.adoptionStart(rec.Client)
	if !ok {
		return false // the client is connecting here, or adopted already
	}
	defer done()
	if _, taken := s.env.Broker.Clients.Get(rec.Client); taken {
		return false // the client is back already
	}
	left := rec.Gone + int64(rec.Expiry) - now
	rec.Instance = s.env.Instance
	rev, err := s.reg.put(ctx, rec, rev, time.Duration(left)*time.Second+time.Minute)
	if err != nil {
		return false
	}
	if adoptWritten != nil {
		adoptWritten(rec.Client)
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

// Adoptions and connections of one client id exclude each other. An
// adoption writes the record, then adds its detached client to mochi's list
// (Clients.Add replaces whatever the list holds for the id); a connection of
// the id that got through Establish in between, and that mochi then added,
// would be replaced by it: still connected, its messages going to the
// detached client. So an adoption does not start while a connection of the
// id is between Establish and mochi's list (noted from Establish until
// Connected, or Disconnected if it ends first; later, the list holds it),
// and a connection's Establish that starts during an adoption waits for it
// to end, then resumes the session it installed.

// adoptionStart marks id as being adopted, unless a connection of it is
// being established here or an adoption of it is under way; done ends the
// mark.
func (s *Tracker) adoptionStart(id string) (done func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nconnect[id] > 0 || s.adopting[id] != nil {
		return nil, false
	}
	ch := make(chan struct{})
	s.adopting[id] = ch
	return func() {
		s.mu.Lock()
		delete(s.adopting, id)
		s.mu.Unlock()
		close(ch)
	}, true
}

// connectingAdd notes cl as being established and waits for an adoption of
// its id under way to end.
func (s *Tracker) connectingAdd(cl *mqtt.Client) {
	s.mu.Lock()
	if _, ok := s.connecting[cl]; !ok {
		s.connecting[cl] = struct{}{}
		s.nconnect[cl.ID]++
	}
	adopting := s.adopting[cl.ID]
	s.mu.Unlock()
	if adopting != nil {
		s.adoptWaits.Add(1)
		s.env.Log.Debug("connection waits for the adoption of its session", "client_id", cl.ID)
		select {
		case <-adopting:
		case <-s.env.Ctx.Done():
		}
	}
}

// adoptWritten, when set (by tests), is called after an adoption wrote its
// record, before the session is installed.
var adoptWritten func(id string)

// connectingDone ends what connectingAdd noted, once (s.mu held).
func (s *Tracker) connectingDone(cl *mqtt.Client) {
	if _, ok := s.connecting[cl]; !ok {
		return
	}
	delete(s.connecting, cl)
	if s.nconnect[cl.ID]--; s.nconnect[cl.ID] <= 0 {
		delete(s.nconnect, cl.ID)
	}
}

// reconcile follows a refused resume whose claim got no answer (see
// refusal): a write that timed out may still be committed, for instance
// when the registry's leader was this node, alone, and its peers come back.
// The record then names this node, connected, for a session it does not
// hold: no expiry would end it here, and a takeover would find nothing
// (the session would still come back from the registry elsewhere, but its
// record and queue would outlive their expiry). Once the registry answers,
// such a record is adopted: the session is held here as a disconnected one
// with the subscriptions, expiry, protocol version and end time of the
// record the claim was written over (claimedAt: a refused CONNECT leaves the
// session as it was). A resume of the client here before that takes the
// session over from where the claim found it instead (see establish).
// reconcile reads twice, apart, before it concludes the claim was not
// committed; it gives up after reconcileFor.
func (s *Tracker) reconcile(id string, claimed *Record) {
	s.env.WG.Add(1)
	go func() {
		defer s.env.WG.Done()
		defer s.unclaim(id, claimed)
		wait, confirmed := s.env.Timeout, false
		for end := time.Now().Add(reconcileFor); time.Now().Before(end); wait = min(2*wait, 30*time.Second) {
			select {
			case <-s.env.Ctx.Done():
				return
			case <-time.After(wait):
			}
			ctx, cancel := s.timeout()
			rec, rev, err := s.reg.get(ctx, id, true)
			switch {
			case err != nil:
			case rec == nil || rec.Node != s.env.Node || rec.Instance != s.env.Instance:
				if confirmed {
					cancel()
					return
				}
				confirmed = true
			case s.holds(id):
				cancel()
				return // the client connected here since
			default:
				old, ok := s.unclaim(id, claimed)
				if !ok {
					cancel()
					return // a resume here took the session over from where the claim found it, or a newer refusal's reconcile follows it
				}
				rec.Expiry, rec.Version, rec.Gone = old.Expiry, old.Version, old.Gone
				if s.adoptRecord(ctx, rec, rev) {
					s.env.Mesh.SyncInterest()
					s.env.Log.Info("session claimed by a refused resume held here", "client_id", id)
				}
				cancel()
				return
			}
			cancel()
		}
	}()
}

// reconcileFor bounds reconcile; past it, a record committed later is
// adopted when this node restarts (Adopt).
const reconcileFor = 10 * time.Minute

// unclaim takes the record a refused claim of id was written over, if
// reconcile still follows it: whoever takes it (reconcile adopting the
// session, or a resume of the client here taking it over) acts alone. With
// only set it takes that refusal's record and nothing else: the reconcile
// of an older refusal must not take (or, ending, drop) a newer one's.
func (s *Tracker) unclaim(id string, only *Record) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.claimedAt[id]
	if !ok || (only != nil && old != only) {
		return Record{}, false
	}
	delete(s.claimedAt, id)
	return *old, true
}

// holds reports whether this node has a client or tracks a session for id.
func (s *Tracker) holds(id string) bool {
	if _, ok := s.env.Broker.Clients.Get(id); ok {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id] != nil
}
