package node

import (
	"context"
	"errors"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/node/store"
)

// runStore opens the store as soon as JetStream allows, keeps the retained
// watcher running and, with automatic replicas, raises the buckets' replicas
// as nodes join. It runs until Close.
func (n *Node) runStore() {
	defer n.wg.Done()
	plan := n.storePlan()
	st := n.openStoreRetrying(plan)
	if st == nil {
		return
	}
	n.st.Store(st)
	loaded := make(chan struct{})
	var once sync.Once
	n.wg.Add(1)
	go n.watchRetained(st, func() { once.Do(func() { close(loaded) }) })
	select {
	case <-loaded:
	case <-n.ctx.Done():
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, time.Minute)
	n.sessions.Adopt(ctx, st)
	cancel()
	close(n.storeReady)
	n.log.Info("store ready", "retained", retainedCount(n.broker))
	n.wg.Add(1)
	go n.watchQuorum(st)
	if n.cfg.Mesh.Replicas == 0 && n.ns != nil {
		n.scaleStore(st, plan)
	}
}

func (n *Node) storePlan() store.Plan {
	p := store.Plan{Cluster: n.cfg.Mesh.ClusterName, Replicas: n.cfg.Mesh.Replicas, AckTimeout: n.cfg.Mesh.Timeout.D()}
	if n.cfg.Sessions.Durability == "replicated" {
		p.QueueAge = n.cfg.Sessions.MaxExpiry.D()
	}
	if n.ns != nil {
		p.Peers = func() int { return len(n.ns.ActivePeers()) }
	}
	return p
}

func (n *Node) openStoreRetrying(plan store.Plan) *store.Store {
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
		st, err := store.Open(ctx, n.ctrl, plan)
		cancel()
		if err == nil {
			return st
		}
		n.storeErr.Store(&err)
		n.log.Debug("store not available yet", "error", err)
		if !n.pause(backoff) {
			return nil
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// pause waits d, or returns false when the node is closing.
func (n *Node) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-n.ctx.Done():
		return false
	}
}

// watchRetained applies the retained bucket to the local store, restarting
// the watcher if it fails.
func (n *Node) watchRetained(st *store.Store, ready func()) {
	defer n.wg.Done()
	starts := 0 // failed starts in a row
	for {
		err := n.retained.watch(n.ctx, st.Retained, ready)
		if n.ctx.Err() != nil {
			return
		}
		switch {
		case !errors.Is(err, errWatchStart):
			starts = 0
			n.log.Warn("retained watcher stopped; restarting", "error", err)
		case starts < 3:
			// Its consumer not created in time: usual while the store's
			// replicas are being raised on a loaded machine.
			starts++
			n.log.Info("retained watcher not started yet; retrying", "error", err)
		default:
			n.log.Warn("retained watcher still not started; retrying", "tries", starts+1, "error", err)
		}
		if !n.pause(time.Second) {
			return
		}
	}
}

// Quorum checks (watchQuorum): how often, how long an answer may take,
// and how long a store without quorum goes before a warning (longer than
// an election, 3 to 5 s, after a peer leaves).
var quorumEvery, quorumWait, quorumWarnAfter = time.Second, 2 * time.Second, 15 * time.Second

// watchQuorum asks the store's streams for their leaders every
// quorumEvery, for /healthz and mqlb_node_store_available. Without a
// majority the store answers no operation, but a node that serves no
// traffic sees nothing fail: it looked healthy with its peers gone. Two
// checks in a row must find a stream without a leader (or no answer)
// before the node says so; it warns once that has lasted quorumWarnAfter.
func (n *Node) watchQuorum(st *store.Store) {
	defer n.wg.Done()
	tick := time.NewTicker(quorumEvery)
	defer tick.Stop()
	misses, warned := 0, false
	var since time.Time
	for {
		ctx, cancel := context.WithTimeout(n.ctx, quorumWait)
		err := st.CheckQuorum(ctx)
		cancel()
		if n.ctx.Err() != nil || n.closing.Load() {
			return
		}
		switch {
		case err == nil:
			n.quorum.Store(nil)
			if warned {
				n.log.Info("store quorum back", "after", time.Since(since).Round(time.Second))
			}
			misses, warned = 0, false
		default:
			if misses++; misses == 1 {
				since = time.Now()
			} else {
				n.quorum.Store(&err)
			}
			if !warned && time.Since(since) >= quorumWarnAfter {
				n.log.Warn("store without quorum: /healthz reports it until it is back", "for", time.Since(since).Round(time.Second), "error", err)
				warned = true
			}
		}
		select {
		case <-tick.C:
		case <-n.ctx.Done():
			return
		}
	}
}

// scaleStore raises bucket replicas as nodes join, until three.
func (n *Node) scaleStore(st *store.Store, plan store.Plan) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
		if err := st.ScaleUp(ctx, plan); err != nil {
			n.log.Debug("store replicas not raised yet", "error", err)
		}
		r, err := st.Replicas(ctx)
		cancel()
		if err == nil && r >= 3 {
			return
		}
		select {
		case <-tick.C:
		case <-n.ctx.Done():
			return
		}
	}
}

// syncInterest returns once every other node knows the subscriptions this
// node made before the call (or after mesh.timeout). NATS forwards a
// subscription to the other servers before any message that follows it on
// the same route, so after a flush of both subscribing connections, a reply
// from each node to a ping sent then proves it has seen them. Calls that
// arrive while a round runs share the next one. With an external NATS
// cluster the node cannot know its peers and only flushes.
func (n *Node) syncInterest() {
	done := make(chan struct{})
	n.syncMu.Lock()
	n.syncWaiting = append(n.syncWaiting, done)
	start := !n.syncRunning
	n.syncRunning = true
	n.syncMu.Unlock()
	if start {
		go n.syncRounds()
	}
	<-done
}

// syncRounds runs rounds until nobody waits.
func (n *Node) syncRounds() {
	for {
		n.syncMu.Lock()
		batch := n.syncWaiting
		n.syncWaiting = nil
		if len(batch) == 0 {
			n.syncRunning = false
			n.syncMu.Unlock()
			return
		}
		n.syncMu.Unlock()
		n.syncRound()
		for _, done := range batch {
			close(done)
		}
	}
}

func (n *Node) syncRound() {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.Mesh.Timeout.D())
	defer cancel()
	if n.queue.FlushWithContext(ctx) != nil || n.data.FlushWithContext(ctx) != nil {
		return
	}
	peers := n.peerNames()
	if len(peers) == 0 {
		return
	}
	inbox := nats.NewInbox()
	sub, err := n.ctrl.SubscribeSync(inbox)
	if err != nil {
		return
	}
	defer sub.Unsubscribe()
	if err := n.ctrl.PublishRequest(n.mesh.subj.Sync(), inbox, nil); err != nil {
		return
	}
	for len(peers) > 0 {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			n.log.Debug("interest sync incomplete", "waiting_for", len(peers), "error", err)
			return
		}
		delete(peers, string(msg.Data))
	}
}

func (n *Node) answerSync(msg *nats.Msg) { _ = msg.Respond([]byte(n.name)) }

// peerNames returns the names of the other servers this node has routes to.
func (n *Node) peerNames() map[string]struct{} {
	if n.ns == nil {
		return nil
	}
	rz, err := n.ns.Routez(&server.RoutezOptions{})
	if err != nil {
		return nil
	}
	peers := map[string]struct{}{}
	for _, r := range rz.Routes {
		if r.RemoteName != "" && r.RemoteName != n.name {
			peers[r.RemoteName] = struct{}{}
		}
	}
	return peers
}

// aclSweepEvery is how often the auth hook forgets the own ACL rules of
// sessions that are gone (expired, taken over, moved to another node).
const aclSweepEvery = time.Minute

// forgetACLs runs the auth hook's Forget every aclSweepEvery: a client's
// rules stay while mochi holds its session, so that messages queued for it
// offline are checked as while it was connected.
func (n *Node) forgetACLs() {
	defer n.wg.Done()
	tick := time.NewTicker(aclSweepEvery)
	defer tick.Stop()
	held := func(cl *mqtt.Client) bool {
		cur, ok := n.broker.Clients.Get(cl.ID)
		return ok && cur == cl
	}
	for {
		select {
		case <-tick.C:
			n.auth.Forget(held, aclSweepEvery)
		case <-n.ctx.Done():
			return
		}
	}
}
