package node

import (
	"context"

	"github.com/nats-io/nats.go"
)

// meshInboxSize is how many mesh messages may wait for the node in each of
// its two inboxes (plain subscriptions, shared members). nats.go never
// blocks on a full channel: a message that finds it full is dropped and
// counted as a slow consumer
// (mqlb_node_dropped_total{reason="mesh_slow_consumer"}). The buffers hold
// pointers, and only the part a burst reaches is ever touched.
const meshInboxSize = 1 << 16

// Every NATS subscription of the mesh delivers into one of two channels
// (nats.go ChanSubscribe, ChanQueueSubscribe), each served by one goroutine.
// An async subscription would cost a goroutine and a pending list per NATS
// subscription, so per distinct filter and per shared member held on the
// node; a channel subscription costs neither, and NATS still carries only
// the subjects some node subscribed to, and still picks one member per
// shared group. One goroutine per inbox also keeps messages in the order
// the node's NATS connection received them, whichever filters they matched.

// startInboxes starts the goroutines that serve the inboxes until the node
// stops.
func (m *mesh) startInboxes(ctx context.Context) {
	m.n.wg.Add(2)
	go m.serve(ctx, m.plainIn, m.onPlain)
	go m.serve(ctx, m.sharedIn, func(msg *nats.Msg) {
		if mb, ok := m.member(msg.Sub); ok {
			m.onShared(mb, msg)
		} // else the member left: the message was for it alone
	})
}

// member returns the shared member a subscription belongs to.
func (m *mesh) member(sub *nats.Subscription) (member, bool) {
	mb, ok := m.memberOf.Load(sub)
	if !ok {
		// addMember holds m.mu from subscribing until it recorded the
		// member: a message that came first is known once it is free.
		m.mu.Lock()
		mb, ok = m.memberOf.Load(sub)
		m.mu.Unlock()
	}
	if !ok {
		return member{}, false
	}
	return mb.(member), true
}

func (m *mesh) serve(ctx context.Context, in <-chan *nats.Msg, handle func(*nats.Msg)) {
	defer m.n.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-in:
			handle(msg)
		}
	}
}

// subscribePlain subscribes the data connection to one subject of a plain
// filter.
func (m *mesh) subscribePlain(subject string) (*nats.Subscription, error) {
	return m.data.ChanSubscribe(subject, m.plainIn)
}

// subscribeMember subscribes the queue connection to one subject of a
// shared member's filter, in the shared subscription's queue group.
func (m *mesh) subscribeMember(mb member, subject string) (*nats.Subscription, error) {
	sub, err := m.queue.ChanQueueSubscribe(subject, queueName(mb.filter), m.sharedIn)
	if err == nil {
		m.memberOf.Store(sub, mb)
	}
	return sub, err
}
