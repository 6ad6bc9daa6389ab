package node

import (
	"context"
	"slices"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/topic"
)

// Choosing local recipients.
//
// mochi collects the subscribers of every publish and, only when shared
// subscriptions match, asks OnSelectSubscribers which shared members to use.
// When shared subscriptions match, the hook chooses: a message injected for
// plain subscribers skips shared groups (those get their own copy through
// NATS queue groups), a local publish serves groups as the policy says. The
// node also needs a say on publishes no shared subscription matches:
//
//   - a copy injected for one shared member must reach that member only,
//     even when it has just left (else mochi hands it to plain subscribers,
//     which had their own copy);
//   - with replicated durability, persistent subscribers get QoS 1/2
//     messages from their queue only (session.Durable.FilterOut);
//   - a delayed will whose session moved to another node is not published
//     here (session.Tracker.WillMoved).
//
// For those the node holds a sentinel shared subscription on "#" for a
// client that does not exist: it matches every topic, so mochi calls the
// hook, which removes it. It costs mochi two small maps and the hook call
// on every publish (about a sixth of a node's CPU under load), so the node
// holds it only while one of the cases can arise: durability on, a shared
// member recorded here, or a delayed will pending (until it is due, plus
// slack). A queue copy is injected under sentMu's read lock after checking
// its member is still recorded, so the sentinel cannot go while one is
// delivered; removing it only tries the lock (else the watchSentinel
// goroutine waits for it), so no caller of the mesh waits for a delivery.
const (
	sentinelClient = "\x00mqlb-sentinel"
	sentinelFilter = "$share/\x00mqlb/#"
	willSlack      = 60 // seconds a delayed will may be published after it is due (mochi's loop ticks every second)
)

func addSentinel(s *mqtt.Server) {
	s.Topics.Subscribe(sentinelClient, packets.Subscription{Filter: sentinelFilter})
}

// needsSentinel reports whether a publish matching no shared subscription
// may still need the hook (see above).
func (m *mesh) needsSentinel() bool {
	return m.n.durable.On() || m.sharedRefs.Load() > 0 || time.Now().Unix() <= m.willUntil.Load()
}

// ensureSentinel subscribes the sentinel if it is not. While it is off no
// queue copy is being delivered (a recorded member keeps it on), so the
// lock is never held for a delivery here.
func (m *mesh) ensureSentinel() {
	if m.sentOn.Load() {
		return
	}
	m.sentMu.Lock()
	defer m.sentMu.Unlock()
	if !m.sentOn.Load() {
		addSentinel(m.n.broker)
		m.sentOn.Store(true)
	}
}

// dropSentinel unsubscribes the sentinel once nothing needs it. It does not
// wait for a queue copy being delivered (or another change of the
// sentinel): watchSentinel does, at once.
func (m *mesh) dropSentinel() {
	if !m.sentOn.Load() {
		return
	}
	if !m.sentMu.TryLock() {
		select {
		case m.sentKick <- struct{}{}:
		default:
		}
		return
	}
	defer m.sentMu.Unlock()
	m.dropSentinelLocked()
}

func (m *mesh) dropSentinelLocked() {
	if m.sentOn.Load() && !m.needsSentinel() {
		m.n.broker.Topics.Unsubscribe(sentinelFilter, sentinelClient)
		m.sentOn.Store(false)
		// An ensureSentinel that came in between saw it on and returned:
		// put it back for it (deliveries wait for the lock meanwhile).
		if m.needsSentinel() {
			addSentinel(m.n.broker)
			m.sentOn.Store(true)
		}
	}
}

// delayedWill keeps the sentinel until a will delayed by delay seconds is
// due, plus slack.
func (m *mesh) delayedWill(delay uint32) {
	until := time.Now().Unix() + int64(delay) + willSlack
	for {
		cur := m.willUntil.Load()
		if cur >= until || m.willUntil.CompareAndSwap(cur, until) {
			break
		}
	}
	m.ensureSentinel()
}

// watchSentinel drops the sentinel when what kept it has passed: from the
// start with durability off, when dropSentinel could not take the lock, and
// every ten seconds (a delayed will's time passed; the session tracker's
// records of sessions that moved away are pruned then too). It may wait
// for the lock: nothing waits for it.
func (m *mesh) watchSentinel(ctx context.Context) {
	drop := func() {
		m.sentMu.Lock()
		defer m.sentMu.Unlock()
		m.dropSentinelLocked()
	}
	drop()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.sentKick:
		case <-tick.C:
			m.n.sessions.Prune() // records of sessions that moved away also end with time
		}
		drop()
	}
}

// selectSubscribers is the OnSelectSubscribers hook.
func (m *mesh) selectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	delete(subs.Shared, sentinelFilter)
	if strings.HasPrefix(pk.TopicName, "$") {
		// mochi applies the '$' rule to plain subscriptions only [MQTT-4.7.2-1].
		for f := range subs.Shared {
			if _, inner, _ := topic.SplitShared(f); strings.HasPrefix(inner, "+") || strings.HasPrefix(inner, "#") {
				delete(subs.Shared, f)
			}
		}
	}
	switch pk.Origin {
	case plainClientID:
		subs.Shared, subs.SharedSelected = map[string]map[string]packets.Subscription{}, map[string]packets.Subscription{}
	case sharedClientID:
		m.selectMember(subs, pk)
	default:
		m.selectLocal(subs, pk)
	}
	return subs
}

// selectMember keeps one member of the one shared subscription a queue copy
// was sent for, and nobody else.
func (m *mesh) selectMember(subs *mqtt.Subscribers, pk packets.Packet) {
	tag, _ := meshwire.TagOf(&pk)
	target, filter := tag.Member.Client, tag.Member.Filter
	members := subs.Shared[filter]
	subs.Subscriptions = map[string]packets.Subscription{}
	subs.InlineSubscriptions = map[int]mqtt.InlineSubscription{}
	subs.Shared = map[string]map[string]packets.Subscription{}
	subs.SharedSelected = map[string]packets.Subscription{}
	if m.policy.Load() != "random" {
		target = "" // local_first and round_robin take this node's members in turn
	}
	id, sub, ok := m.pick(filter, members, target, false)
	if !ok {
		m.n.metrics.dropped("no_shared_member") // the member left while the message was on its way
		return
	}
	subs.SharedSelected[id] = sub
}

// selectLocal decides local shared deliveries of a publish made on this
// node. local_first serves every group that has a connected member here and
// remembers which, so the mesh copy tells the other nodes to skip them;
// round_robin and random leave every group to the cluster-wide NATS queue
// (which includes this node's members). Broker-internal publishes ($SYS)
// never leave the node, so they are always served here.
func (m *mesh) selectLocal(subs *mqtt.Subscribers, pk packets.Packet) {
	tag, tagged := meshwire.TagOf(&pk)
	internal := !tagged && pk.Origin == ""
	selected := map[string]packets.Subscription{}
	var handled []string
	if internal || m.policy.Load() == "local_first" {
		for filter, members := range subs.Shared {
			id, sub, ok := m.pick(filter, members, "", !internal)
			if !ok {
				continue
			}
			handled = append(handled, filter)
			if prev, dup := selected[id]; dup {
				sub = prev.Merge(sub)
			}
			selected[id] = sub
		}
	}
	subs.Shared = map[string]map[string]packets.Subscription{}
	subs.SharedSelected = selected
	if len(handled) == 0 || internal {
		return
	}
	var key any = tag.ID
	if !tagged {
		key = willKey(pk.Origin) // a will: published on the mesh from OnWillSent
	}
	m.handled.Store(key, handled)
}

// willKey keys the groups served for a will (wills carry no tag): the
// client's id.
type willKey string

// takeHandled returns (and forgets) the groups selectLocal served for a
// message id or a willKey.
func (m *mesh) takeHandled(key any) []string {
	v, ok := m.handled.LoadAndDelete(key)
	if !ok {
		return nil
	}
	return v.([]string)
}

// pick chooses one member of a shared subscription: target if it is a
// member, else connected members in turn (offline ones, whose sessions queue
// QoS 1/2 messages, only when no member is connected and onlineOnly is off).
func (m *mesh) pick(filter string, members map[string]packets.Subscription, target string, onlineOnly bool) (string, packets.Subscription, bool) {
	if sub, ok := members[target]; ok && target != "" {
		return target, sub, true
	}
	ids := make([]string, 0, len(members))
	for id := range members {
		if m.online(id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 && !onlineOnly {
		for id := range members {
			if _, known := m.n.broker.Clients.Get(id); known {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return "", packets.Subscription{}, false
	}
	slices.Sort(ids)
	m.rrMu.Lock()
	n := m.rr[filter]
	m.rr[filter] = n + 1
	m.rrMu.Unlock()
	id := ids[n%uint64(len(ids))]
	return id, members[id], true
}

func (m *mesh) online(id string) bool {
	cl, ok := m.n.broker.Clients.Get(id)
	return ok && !cl.Closed()
}
