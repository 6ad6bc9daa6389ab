package session

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/node/store"
)

// Tracker follows every client session on this node: its registry record,
// the order its QoS 1/2 messages were queued in (mochi keeps them in a map),
// which of them were sent (their DUP flag: sent.go), and the
// max_offline_messages bound. Takeover between nodes is in takeover.go.
type Tracker struct {
	env        Env
	subj       meshwire.Subjects // the mesh's: takeover requests
	durable    *Durable
	reg        registry
	maxOffline atomic.Int64 // sessions.max_offline_messages (Reload may change it)

	mu         sync.Mutex
	byID       map[string]*session
	handedOver map[*mqtt.Client]int64    // given to another node (unix second): its disconnect is not ours to record; see pruneHandedOver
	expiring   map[*mqtt.Client]struct{} // being dropped by session expiry
	refused    map[*mqtt.Client]refusal  // resumes refused (durable sessions), until their connection ends
	claimedAt  map[string]*Record        // client id → the record a refused claim was written over (see reconcile)
	connecting map[*mqtt.Client]struct{} // connections from Establish until Connected or Disconnected (see adoptionStart)
	nconnect   map[string]int            // client id → its connections in connecting
	adopting   map[string]chan struct{}  // client id → closed when its adoption (adoptRecord) is done
	conns      uint64                    // connections tracked (session.conn)
	movedWills sync.Map                  // client id → movedWill: its session moved away, a delayed will of it maybe pending here
	prunedAt   atomic.Int64              // unix second movedWills was last pruned
	adoptWaits atomic.Int64              // connections that waited for an adoption of their id
	sent       sync.Map                  // client id → *sentIDs: deliveries written since queued (sent.go)
}

// Delayed wills of sessions that moved away.
//
// mochi holds a delayed will on its timer, keyed by client id, and offers
// no way to cancel it; it forgets it only when a connection with that id is
// established here (after the CONNACK, before OnSessionEstablished). A
// session that moves to another node before the delay ended must not have
// its will published [MQTT-3.1.3-9]: giveUp records the id in movedWills,
// and the select hook drops the will when mochi publishes it (WillMoved).
//
// giveUp records it whether or not mochi holds the will yet: mochi calls
// sendLWT (the will flag checked, the will copied for OnWill, then queued
// with Created = now) before it stops the client, so a client that is not
// Closed may be in sendLWT already, or get there once giveUp closes it; the
// will is then created after the record, in that second or a later one. So
// no will's Created second is compared with the move: the record matches
// every delayed will of the id until a later connection of the id is
// established here (Connected), after mochi dropped the wills of the
// earlier ones. "Later" is by the number track gives each connection: the
// connection that moved away may itself reach OnSessionEstablished only
// after giveUp (its client had its CONNACK, ended and connected elsewhere
// meanwhile), and must not clear the record of its own will.
//
// giveUp no longer clears the will flag of a client not Closed: mochi
// copies the will without synchronisation in sendLWT (and writes it in
// other places), so giveUp neither writes nor reads cl.Properties.Will; the
// will delay is the one read when the connection was established here
// (session.willDelay).
//
// A record goes once no will of the moved connection can still come: the
// will delay after that connection ended, plus willMargin. Until the
// tracker hears of its end (Disconnected), a record is pending, and kept up
// to pendingMargin more. Records are pruned as new ones come (at most once
// a second) and from the node's sentinel watch (Prune).

// movedWill is the record of a session that moved away.
type movedWill struct {
	conn    uint64 // the connection that moved (session.conn)
	delay   uint32 // its will delay, seconds
	until   int64  // unix second after which no will of it can come: its end (the move, while pending) + delay + willMargin
	pending bool   // the connection had not ended at the move, and Disconnected has not been heard of since
}

const (
	// willMargin: seconds a delayed will may come after its delay ended
	// (mochi's timer ticks every second and publishes after the due second)
	// or after the connection ended (a will queued by a client Closed by
	// something else first, see giveUp). As the sentinel's willSlack.
	willMargin = 60
	// pendingMargin: how much longer a pending record is kept. giveUp
	// closes the connection, which then ends within seconds; this bounds
	// a record of a connection whose end the tracker never hears of (mochi
	// skips OnDisconnect when sending the CONNACK, or the inflight
	// messages after it, fails; the node reports that end itself, see
	// node/unseen.go, and this stays as a bound).
	pendingMargin = 600
)

// expired reports whether the record's time has passed at now.
func (mw movedWill) expired(now int64) bool {
	if mw.pending {
		return mw.until+pendingMargin < now
	}
	return mw.until < now
}

// WillMoved reports whether pk is a delayed will mochi publishes for a
// session that moved to another node before the delay ended: it must not be
// published [MQTT-3.1.3-9] (mochi offers no way to cancel it).
func (s *Tracker) WillMoved(pk packets.Packet) bool {
	if pk.Connect.WillProperties.WillDelayInterval == 0 {
		return false
	}
	_, ok := s.movedWills.LoadAndDelete(pk.Origin) // mochi holds one will per id
	return ok
}

// Connected notes a connection established here (OnSessionEstablished):
// mochi has dropped the delayed will of the earlier connections of its id,
// whose record is done with. A record of cl's own connection stays (cl was
// given up before it got here), as does any record when cl is no longer
// the connection tracked for its id.
func (s *Tracker) Connected(cl *mqtt.Client) {
	s.mu.Lock()
	s.connectingDone(cl) // in mochi's list now
	s.mu.Unlock()
	v, ok := s.movedWills.Load(cl.ID)
	if !ok {
		return
	}
	s.mu.Lock()
	ss := s.byID[cl.ID]
	current := ss != nil && ss.cl == cl && ss.conn != v.(movedWill).conn
	s.mu.Unlock()
	if current {
		s.movedWills.CompareAndDelete(cl.ID, v)
	}
}

// willMovedAway records, under s.mu, that the session of id moved away
// from connection conn with a will delayed by delay; open: the connection
// has not ended yet (Disconnected then starts the record's time).
func (s *Tracker) willMovedAway(id string, conn uint64, delay uint32, open bool, now int64) {
	s.movedWills.Store(id, movedWill{conn: conn, delay: delay, until: now + int64(delay) + willMargin, pending: open})
}

// movedConnectionEnded starts the time of a pending record: the connection
// that moved away ended, after mochi's sendLWT.
func (s *Tracker) movedConnectionEnded(id string, now int64) {
	v, ok := s.movedWills.Load(id)
	if !ok || !v.(movedWill).pending {
		return
	}
	mw := v.(movedWill)
	mw.until, mw.pending = max(mw.until, now+int64(mw.delay)+willMargin), false
	s.movedWills.CompareAndSwap(id, v, mw) // not if WillMoved took it meanwhile, or another record replaced it
}

// Prune drops what the tracker keeps of sessions that moved away once its
// time has passed: moved-will records, and connections given up whose end
// was never heard of (pruneHandedOver). The node's sentinel watch calls it
// every ten seconds.
func (s *Tracker) Prune() { s.prune(time.Now().Unix()) }

func (s *Tracker) prune(now int64) {
	s.pruneMovedWills(now)
	s.pruneHandedOver(now)
}

// pruneHandedOver forgets connections given to another node (giveUp)
// whose end the tracker has not heard of pendingMargin after the move.
// giveUp closes the connection, and mochi calls OnDisconnect
// (Disconnected, which forgets it) within moments, except when the
// connection was given up between mochi adding the client to its list and
// the end of its CONNACK and resend of inflight messages: the CONNACK (or a
// resend), written after giveUp closed the connection, fails, and mochi's
// attachClient returns before OnDisconnect (mochi v2.7.9 server.go:460-472,
// OnDisconnect at 486). The entry, which holds the client and so its whole
// session, then stayed for good. The node now calls Disconnected for such a
// connection once mochi is done with it (node/unseen.go); this prune stays
// as a bound. (A Disconnected that came after all, for
// a connection closed pendingMargin before, would find its session no
// longer tracked here: nothing of it would be written.)
func (s *Tracker) pruneHandedOver(now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for cl, at := range s.handedOver {
		if at+pendingMargin < now && cl.Closed() {
			delete(s.handedOver, cl)
		}
	}
}

// pruneMovedWills prunes at most once a second.
func (s *Tracker) pruneMovedWills(now int64) {
	last := s.prunedAt.Load()
	if now == last || !s.prunedAt.CompareAndSwap(last, now) {
		return
	}
	s.movedWills.Range(func(id, v any) bool {
		if v.(movedWill).expired(now) {
			s.movedWills.CompareAndDelete(id, v)
		}
		return true
	})
}

// Resumable checks, before the client is accepted, that a session it wants
// to resume can be looked up: with the registry not formed yet (the first
// node of a cluster, waiting for its peers) or failing (no JetStream quorum,
// a leader election), taking it with an empty local session would lose its
// subscriptions and queued messages without a word. Clients that start
// clean have nothing to lose and are always taken.
//
// Resumable runs before authentication (OnConnect). A session that durable
// sessions would refuse without the registry is not looked up here but by
// Establish, after authentication, which waits for a failing registry
// (wait.go) and refuses if it must: a client not yet authenticated does
// not hold its connection and cost registry reads for seconds. (Held here,
// it also kept an attempt of auth.Throttle's budgets taken while the
// throttle counted attempts in progress: 129 of 200 clients resuming at
// once from one address got 0x9F.) Other sessions (memory durability) are
// looked up here, once, and refused at once if that fails.
func (s *Tracker) Resumable(cl *mqtt.Client, pk packets.Packet) error {
	if pk.Connect.Clean || s.durable.wouldRefuse(cl, pk) {
		return nil
	}
	ctx, cancel := s.timeout()
	defer cancel()
	_, _, err := s.reg.get(ctx, cl.ID, false)
	return err
}

// session is what this node knows of one client id.
type session struct {
	cl       *mqtt.Client // the connection (or offline session) the record describes
	rec      Record
	rev      uint64            // registry revision last written by this node; 0 = none
	order    map[uint16]uint64 // packet id → queue position
	next     uint64
	wmu      sync.Mutex // one registry write of the session at a time (write, rewriting, removeRecord)
	unsaved  *Record    // the newest record write that failed, until a retry (or a newer write) succeeds
	retrying bool       // a rewriting goroutine follows unsaved
	// willDelay is cl's will delay (0: no will, or not delayed), read when
	// cl was established here: giveUp must not read cl.Properties.Will,
	// which mochi reads and writes without synchronisation.
	willDelay uint32
	conn      uint64 // this node's number for cl's connection, increasing (see movedWill)
}

func newTracker(env Env) *Tracker {
	s := &Tracker{env: env, subj: meshwire.NewSubjects(env.Cluster), reg: registry{env.Store}, byID: map[string]*session{},
		handedOver: map[*mqtt.Client]int64{}, expiring: map[*mqtt.Client]struct{}{},
		refused: map[*mqtt.Client]refusal{}, claimedAt: map[string]*Record{},
		connecting: map[*mqtt.Client]struct{}{}, nconnect: map[string]int{}, adopting: map[string]chan struct{}{}}
	s.maxOffline.Store(int64(env.MaxOffline))
	return s
}

// SetMaxOffline changes sessions.max_offline_messages (Reload).
func (s *Tracker) SetMaxOffline(n int) { s.maxOffline.Store(int64(n)) }

// Lookup returns the registry record of a client id (nil if none).
func (s *Tracker) Lookup(ctx context.Context, id string) (*Record, error) {
	rec, _, err := s.reg.get(ctx, id, false)
	return rec, err
}

func (s *Tracker) get(id string) *session {
	ss := s.byID[id]
	if ss == nil {
		ss = &session{order: map[uint16]uint64{}}
		s.byID[id] = ss
	}
	return ss
}

// expirySeconds is how long the client's session outlives its connection,
// capped by sessions.max_expiry (which is also the expiry of MQTT 3.1.1
// persistent sessions).
func (s *Tracker) expirySeconds(cl *mqtt.Client) uint32 {
	if EndsWithConnection(cl) {
		return 0
	}
	capped := uint32(s.env.MaxExpiry / time.Second)
	if cl.Properties.ProtocolVersion == 5 {
		return min(cl.Properties.Props.SessionExpiryInterval, capped)
	}
	return capped
}

// record builds the registry record for a client connected here.
func (s *Tracker) record(cl *mqtt.Client, subs map[string]packets.Subscription) Record {
	return Record{
		Client: cl.ID, Node: s.env.Node, Instance: s.env.Instance,
		Clean: EndsWithConnection(cl), Expiry: s.expirySeconds(cl),
		Version: cl.Properties.ProtocolVersion, Since: time.Now().Unix(),
		Subs: subRecords(subs),
	}
}

func (s *Tracker) timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*s.env.Timeout)
}

// Establish runs before mochi decides session present (OnSessionEstablish):
// it takes the session over from the node that owns it, if another one
// does, and records this node as the owner (for a durable session the
// record comes first: see establish). Both happen before the CONNACK.
//
// A session the node would refuse without the registry (see
// Durable.refuse) waits for it first (see wait.go).
func (s *Tracker) Establish(cl *mqtt.Client, pk packets.Packet) {
	s.connectingAdd(cl)
	wait := newRegistryWait()
	var took uint64 // the registry revision whose owner was asked already
	fresh := false  // read the record from the leader (after a conflict)
	for conflicts := 0; conflicts < maxConflicts; {
		res, err := s.establish(cl, pk, &took, &wait, fresh)
		switch {
		case err == nil:
			s.mu.Lock()
			delete(s.refused, cl) // a claim that failed in an earlier try was written over
			s.mu.Unlock()
			return
		case res == conflict:
			conflicts++ // another node wrote meanwhile: look again
			s.env.Log.Debug("session registry conflict", "client_id", cl.ID, "try", conflicts, "fresh", fresh, "error", err)
			if conflicts < maxConflicts && !wait.pause(s.env.Ctx, conflicts) {
				conflicts = maxConflicts // stopping
			}
			fresh = true
			// From here each try ends with the wait: a leader read while
			// the bucket elects a leader waits for one, and must not
			// outlast the CONNACK the load balancer waits for.
			wait.waiting = true
		case s.durable.wouldRefuse(cl, pk) && wait.retry(s.env.Ctx):
		default:
			s.localOnly(cl, err)
			s.refuse(cl, pk, "session registry unavailable: try again")
			return
		}
	}
	// Each try read the latest record from the leader and another write
	// came first every time. A durable session is refused (its client comes
	// back); accepted here without the registry, its session would start
	// empty while the registry names another owner.
	s.env.Log.Warn("session registry kept changing", "client_id", cl.ID, "tries", maxConflicts,
		"refused", s.durable.wouldRefuse(cl, pk))
	s.track(cl, Record{}, 0)
	s.refuse(cl, pk, "session registry busy: try again")
}

// refusal is what the tracker keeps of a refused resume until its
// connection ends.
type refusal struct {
	// shell: this node held no session for the client id, so mochi's
	// client holds nothing either. Kept until its expiry, it would be a
	// session of this node's (its expiry ending the session's queue, a
	// takeover handing over its empty subscriptions) while the session
	// lives elsewhere: it is removed when the connection ends.
	shell bool
	// claimed: the record a claim of the session (see claim) was written
	// over, when that claim failed without an answer. It may still be
	// committed once the registry has its quorum back, naming this node the
	// owner of a session it does not hold (see reconcile).
	claimed *Record
}

// refuse refuses cl's resume (see Durable.refuse), noting whether this node
// held a session for its id that mochi is about to hand to cl.
func (s *Tracker) refuse(cl *mqtt.Client, pk packets.Packet, why string) {
	if !s.durable.wouldRefuse(cl, pk) {
		return
	}
	_, held := s.env.Broker.Clients.Get(cl.ID)
	s.mu.Lock()
	r := s.refused[cl]
	r.shell = !held
	s.refused[cl] = r
	s.mu.Unlock()
	s.durable.refuse(cl, pk, why)
}

// maxConflicts is how many compare-and-set conflicts Establish takes: each
// one is another node's write (the old owner recording the disconnect,
// the owner handing the session over), a handful at most for one connect,
// or a leader refusing writes while it settles (see registryWait.pause).
const maxConflicts = 5

type outcome int

const (
	established outcome = iota
	failed
	conflict
)

// establish is one try of Establish: look the session up, take it over from
// its owner (once per registry revision), record this node as the owner.
func (s *Tracker) establish(cl *mqtt.Client, pk packets.Packet, took *uint64, wait *registryWait, fresh bool) (outcome, error) {
	ctx, cancel := wait.attempt(s.env.Timeout)
	defer cancel()
	rec, rev, err := s.reg.get(ctx, cl.ID, fresh)
	if err != nil {
		return failed, err
	}
	if rec != nil && rec.Node == s.env.Node && rec.Instance == s.env.Instance && !rec.Clean && rev != *took && !s.holds(cl.ID) {
		// The record names this node for a session it does not hold: a
		// claim refused here and committed later (see reconcile). The
		// session is where that claim found it: take it over from there,
		// or, that owner unknown, restore it from the record.
		from := rec
		if old, ok := s.unclaim(cl.ID, nil); ok {
			from = &old
		}
		s.env.Log.Info("session record names this node, which holds nothing: taking it over from where a refused claim found it",
			"client_id", cl.ID, "from", from.Node)
		s.takeOver(ctx, cl, pk, from)
		*took = rev
	}
	if rec != nil && (rec.Node != s.env.Node || rec.Instance != s.env.Instance) && rev != *took {
		if s.durable.wouldRefuse(cl, pk) {
			// Record this node as the owner before the owner hands the
			// session over: registry reads and writes fail apart (any
			// replica answers a read, a write needs the leader, which an
			// election after a node died takes seconds to replace), and a
			// session handed over before a write that then failed was
			// refused here and gone there, the registry still naming the
			// old owner. (Only where a failed write refuses the client:
			// elsewhere the client is taken with what was handed over.)
			var err error
			if rev, err = s.claim(ctx, cl, pk, rec, rev); store.IsConflict(err) {
				return conflict, err
			} else if err != nil {
				s.mu.Lock()
				r := s.refused[cl]
				r.claimed = rec
				s.refused[cl] = r
				s.mu.Unlock()
				return failed, err
			}
		}
		s.takeOver(ctx, cl, pk, rec)
		*took = rev
	}
	var subs map[string]packets.Subscription
	if existing, ok := s.env.Broker.Clients.Get(cl.ID); ok && !pk.Connect.Clean {
		subs = existing.State.Subscriptions.GetAll() // what mochi is about to inherit
	}
	mine := s.record(cl, subs)
	newRev, err := s.reg.put(ctx, &mine, rev, 0)
	if store.IsConflict(err) {
		return conflict, err
	}
	if err != nil {
		return failed, err
	}
	s.track(cl, mine, newRev)
	s.durable.established(cl, pk.Connect.Clean, rec != nil && !rec.Clean, subs)
	s.durable.countOffline(cl)
	return established, nil
}

// claim writes the registry record naming this node as cl's owner, with the
// subscriptions the old record holds (none for a clean start), at the old
// record's revision; it returns the new revision.
func (s *Tracker) claim(ctx context.Context, cl *mqtt.Client, pk packets.Packet, old *Record, rev uint64) (uint64, error) {
	mine := s.record(cl, nil)
	if !pk.Connect.Clean {
		mine.Subs = old.Subs
	}
	return s.reg.put(ctx, &mine, rev, 0)
}

func (s *Tracker) localOnly(cl *mqtt.Client, err error) {
	if !errors.Is(err, store.ErrNotReady) && !errors.Is(err, store.ErrDown) {
		s.env.Warn("session registry unavailable: session kept on this node only", "client_id", cl.ID, "error", err)
	}
	s.track(cl, Record{}, 0)
}

// track records cl as the client of its id here. It runs in cl's
// connection (OnSessionEstablish) or for a detached client: nothing writes
// cl's will meanwhile.
func (s *Tracker) track(cl *mqtt.Client, rec Record, rev uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.get(cl.ID)
	ss.cl, ss.rec, ss.rev = cl, rec, rev
	s.conns++
	ss.conn, ss.willDelay = s.conns, 0
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 {
		ss.willDelay = cl.Properties.Will.WillDelayInterval
	}
}

// RecordedVersion returns the protocol version cl's session was recorded
// with, 0 if it is not tracked here. A session adopted from an earlier run
// is held by a client marked v5 (for mochi's expiry, see adopt), whatever
// its client speaks.
func (s *Tracker) RecordedVersion(cl *mqtt.Client) byte {
	rec, _, ok := s.current(cl)
	if !ok {
		return 0
	}
	return rec.Version
}

// current returns the record state if cl is the client this node tracks.
func (s *Tracker) current(cl *mqtt.Client) (Record, uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.byID[cl.ID]
	if ss == nil || ss.cl != cl || ss.rev == 0 {
		return Record{}, 0, false
	}
	return ss.rec, ss.rev, true
}

// SaveSubs records a persistent session's subscriptions after a SUBSCRIBE or
// UNSUBSCRIBE, so another node can restore them if this one is gone.
func (s *Tracker) SaveSubs(cl *mqtt.Client) {
	s.write(cl, func(rec *Record) bool {
		rec.Subs = subRecords(cl.State.Subscriptions.GetAll())
		return !rec.Clean
	})
}

// tracked returns cl's session if cl is the client this node tracks and
// the registry has a record of it.
func (s *Tracker) tracked(cl *mqtt.Client) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.byID[cl.ID]; ss != nil && ss.cl == cl && ss.rev != 0 {
		return ss
	}
	return nil
}

// recordTTL: a disconnected session's record outlives its expiry by a
// minute; a connected one's does not expire.
func recordTTL(rec *Record) time.Duration {
	if rec.Gone == 0 {
		return 0
	}
	return time.Duration(rec.Expiry)*time.Second + time.Minute
}

// write applies edit to cl's record (if edit reports a change to store)
// and puts it, one write of the session at a time, and remembers it. A
// write that fails is written again (see rewriting): each write is the
// whole record, so the newest failed one is all a retry needs.
func (s *Tracker) write(cl *mqtt.Client, edit func(*Record) bool) {
	ss := s.tracked(cl)
	if ss == nil {
		return
	}
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	rec, rev, ok := s.current(cl)
	if !ok || !edit(&rec) {
		return
	}
	ctx, cancel := s.timeout()
	defer cancel()
	newRev, err := s.reg.put(ctx, &rec, rev, recordTTL(&rec))
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss.cl != cl || s.byID[cl.ID] != ss {
		return
	}
	switch {
	case err == nil:
		ss.rec, ss.rev, ss.unsaved = rec, newRev, nil
	case !store.IsConflict(err):
		s.env.Warn("session registry write failed: writing it again when the store answers", "client_id", cl.ID, "error", err)
		ss.unsaved = &rec
		if !ss.retrying {
			ss.retrying = true
			s.env.WG.Go(func() { s.rewriting(cl, ss) })
		}
	}
}

// rewriteMax bounds the pause between rewriting's tries.
const rewriteMax = 30 * time.Second

// rewriting writes ss.unsaved, a record write of cl's session that failed,
// until the store takes it: otherwise a SUBSCRIBE acknowledged while the
// store was briefly down (a leader election, its cooldown) would be missing
// from the record another node restores the session from. It stops when a
// try succeeds, cl is no longer the session tracked here, or the record
// changed to something else meanwhile (the session moved, or ended).
func (s *Tracker) rewriting(cl *mqtt.Client, ss *session) {
	wait := max(s.env.Timeout, time.Second) // the store skips itself for a second after a failure
	for tries := 1; sleep(s.env.Ctx, wait); tries++ {
		wait = min(2*wait, rewriteMax)
		done, err := s.rewriteOnce(cl, ss)
		if done {
			return
		}
		s.env.Log.Debug("session registry rewrite failed", "client_id", cl.ID, "tries", tries, "error", err)
	}
}

// rewriteOnce makes one try of rewriting; done: no more tries are needed.
func (s *Tracker) rewriteOnce(cl *mqtt.Client, ss *session) (done bool, err error) {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	finish := func() {
		s.mu.Lock()
		ss.unsaved, ss.retrying = nil, false
		s.mu.Unlock()
	}
	s.mu.Lock()
	u, rev := ss.unsaved, ss.rev
	if u == nil || s.byID[cl.ID] != ss || ss.cl != cl {
		ss.retrying = false
		s.mu.Unlock()
		return true, nil
	}
	s.mu.Unlock()
	ctx, cancel := s.timeout()
	defer cancel()
	newRev, err := s.reg.put(ctx, u, rev, recordTTL(u))
	if store.IsConflict(err) {
		// An earlier try that timed out may have been committed anyway;
		// anything else written over the record is not ours to overwrite.
		var rec *Record
		rec, newRev, err = s.reg.get(ctx, cl.ID, true)
		if err != nil {
			return false, err
		}
		if rec == nil || !sameRecord(rec, u) {
			finish()
			s.env.Log.Debug("session registry rewrite dropped: the record changed meanwhile", "client_id", cl.ID)
			return true, nil
		}
	}
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	if ss.cl == cl {
		ss.rec, ss.rev = *u, newRev
	}
	s.mu.Unlock()
	finish()
	s.env.Log.Info("session registry written after a failed write", "client_id", cl.ID)
	return true, nil
}

// sameRecord reports whether a and b hold the same values.
func sameRecord(a, b *Record) bool {
	x, y := *a, *b
	x.Subs, y.Subs = nil, nil
	return reflect.DeepEqual(x, y) && slices.Equal(a.Subs, b.Subs)
}

// Disconnected records the end of a connection (OnDisconnect): a session
// that ends with it leaves the registry, a persistent one is marked
// disconnected with its expiry as the record's time to live.
func (s *Tracker) Disconnected(cl *mqtt.Client, expire bool) {
	s.mu.Lock()
	s.connectingDone(cl)
	_, gone := s.handedOver[cl]
	delete(s.handedOver, cl)
	r, wasRefused := s.refused[cl]
	delete(s.refused, cl)
	s.mu.Unlock()
	if gone {
		s.movedConnectionEnded(cl.ID, time.Now().Unix())
		return
	}
	if wasRefused && r.shell && !expire {
		s.remove(cl) // no session of this node's (see refusal)
		if r.claimed != nil {
			s.mu.Lock()
			s.claimedAt[cl.ID] = r.claimed
			s.mu.Unlock()
			s.reconcile(cl.ID, r.claimed)
		}
		return
	}
	if expire {
		s.removeRecord(cl)
		return
	}
	s.write(cl, func(rec *Record) bool {
		rec.Gone = time.Now().Unix()
		rec.Subs = subRecords(cl.State.Subscriptions.GetAll())
		return true
	})
}

// removeRecord forgets cl's session and removes its record, after any
// write of it in progress.
func (s *Tracker) removeRecord(cl *mqtt.Client) {
	if ss := s.tracked(cl); ss != nil {
		ss.wmu.Lock()
		defer ss.wmu.Unlock()
	}
	_, rev, ok := s.current(cl)
	s.forget(cl)
	if !ok {
		return
	}
	ctx, cancel := s.timeout()
	defer cancel()
	if err := s.reg.remove(ctx, cl.ID, rev); err != nil && !store.IsConflict(err) {
		s.env.Warn("session registry remove failed", "client_id", cl.ID, "error", err)
	}
}

// forget drops what this node tracks for cl's id, if cl is the tracked client.
func (s *Tracker) forget(cl *mqtt.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.byID[cl.ID]; ss == nil || ss.cl == cl || ss.cl == nil {
		delete(s.byID, cl.ID)
		s.sent.Delete(cl.ID)
	}
}

// Expired ends a disconnected session whose expiry passed (OnClientExpired):
// mochi only forgets the client, so its subscriptions and queued messages
// are dropped here, and its record leaves the registry. It reports whether
// the session was this node's to end, so its queue with it: the registry
// still named this node at the revision it knew, or names nobody now (the
// record's own time to live ended it first). A session mochi kept of a
// connection the registry never recorded here (a resume refused while the
// registry was unavailable) is not, when the registry names another node:
// the session lives on there.
func (s *Tracker) Expired(cl *mqtt.Client) (owned bool) {
	s.mu.Lock()
	s.expiring[cl] = struct{}{}
	s.mu.Unlock()
	s.env.Broker.UnsubscribeClient(cl)
	cl.ClearInflights()
	_, rev, ok := s.current(cl)
	s.mu.Lock()
	delete(s.expiring, cl)
	s.mu.Unlock()
	s.forget(cl)
	ctx, cancel := s.timeout()
	defer cancel()
	if ok {
		err := s.reg.remove(ctx, cl.ID, rev)
		if err == nil {
			return true
		}
		if !store.IsConflict(err) {
			s.env.Warn("session registry remove failed", "client_id", cl.ID, "error", err)
		}
	}
	rec, _, err := s.reg.get(ctx, cl.ID, true)
	return err == nil && (rec == nil || rec.Node == s.env.Node && rec.Instance == s.env.Instance)
}

// Queued notes a QoS 1/2 message entering a client's inflight store
// (OnQosPublish) and enforces max_offline_messages on offline sessions by
// dropping the oldest.
//
// A takeover's placeholder (hold, install.go) is not an offline session:
// it keeps, for a client connecting now, what is published while the old
// owner hands the session over, and install then takes from it only what
// the session needs (with replicated durability not the QoS 1/2 messages
// the session's queue delivers, which is most of what it gets). The limit
// applied to it dropped, and counted as offline_queue_full, messages that
// were then either delivered from the queue anyway or, with memory
// durability, lost to a client that was connecting. It keeps all of them;
// mqtt.max_inflight (mochi's quota) and the takeover's timeout bound it.
func (s *Tracker) Queued(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	if !pk.FixedHeader.Dup { // a new message under this id (mochi's resend has DUP set)
		s.unsent(cl.ID, pk.PacketID)
	}
	limit := int(s.maxOffline.Load())
	if isHold(cl.ID) {
		limit = 0
	}
	s.mu.Lock()
	ss := s.get(cl.ID)
	if _, ok := ss.order[pk.PacketID]; !ok {
		ss.order[pk.PacketID] = ss.next
		ss.next++
	}
	var drop []uint16
	if over := cl.State.Inflight.Len() - limit; limit > 0 && over > 0 && cl.Closed() {
		drop = ss.oldest(over, pk.PacketID)
		for _, id := range drop {
			delete(ss.order, id)
		}
	}
	s.mu.Unlock()
	for _, id := range drop {
		if cl.State.Inflight.Delete(id) {
			atomic.AddInt64(&s.env.Broker.Info.Inflight, -1)
			s.env.Drop("offline_queue_full", 1)
		}
	}
}

// oldest returns up to n queued packet ids, oldest first, never keep.
func (ss *session) oldest(n int, keep uint16) []uint16 {
	out := make([]uint16, 0, n)
	for len(out) < n {
		best, found := uint16(0), false
		for id, pos := range ss.order {
			if id != keep && (!found || pos < ss.order[best]) && !containsID(out, id) {
				best, found = id, true
			}
		}
		if !found {
			break
		}
		out = append(out, best)
	}
	return out
}

func containsID(ids []uint16, id uint16) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// Settled forgets a message that left the inflight store (OnQosComplete,
// OnQosDropped) and counts drops.
func (s *Tracker) Settled(cl *mqtt.Client, pk packets.Packet, dropped bool) {
	if !cl.IsTakenOver() { // mochi empties a taken-over connection's copy of the store
		s.unsent(cl.ID, pk.PacketID)
	}
	s.mu.Lock()
	if ss := s.byID[cl.ID]; ss != nil {
		delete(ss.order, pk.PacketID)
	}
	_, expiring := s.expiring[cl]
	s.mu.Unlock()
	switch {
	case !dropped || cl.IsTakenOver():
	case expiring:
		s.env.Drop("session_expired", 1)
	default:
		s.env.Drop("message_expired", 1)
	}
}

// queueOrder returns the queue positions of a client's messages.
func (s *Tracker) queueOrder(id string) map[uint16]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[uint16]uint64{}
	if ss := s.byID[id]; ss != nil {
		for k, v := range ss.order {
			out[k] = v
		}
	}
	return out
}

// Counts returns connected and disconnected sessions held here.
func (s *Tracker) Counts() (online, offline int) {
	for id, cl := range s.env.Broker.Clients.GetAll() {
		switch {
		case cl.Net.Inline || id == "" || id[0] == 0:
		case cl.Closed():
			offline++
		default:
			online++
		}
	}
	return online, offline
}
