package node

import (
	"slices"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/topic"
)

// Choosing local recipients.
//
// mochi collects the subscribers of every publish and, only when shared
// subscriptions match, asks OnSelectSubscribers which shared members to use.
// The mesh needs a say on every publish: a message injected for plain
// subscribers must skip shared groups (those get their own copy through NATS
// queue groups) and one injected for a shared group must reach that group
// only. So the node holds a sentinel shared subscription on "#" for a client
// that does not exist: it matches every topic, so mochi always calls the
// hook, which always removes it.
const (
	sentinelClient = "\x00mqlb-sentinel"
	sentinelFilter = "$share/\x00mqlb/#"
)

func addSentinel(s *mqtt.Server) {
	s.Topics.Subscribe(sentinelClient, packets.Subscription{Filter: sentinelFilter})
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
