package node

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/node/meshwire"
)

// Every NATS subscription of the mesh delivers into one of two inboxes
// (plain subscriptions through nats.go ChanSubscribe, shared members through
// ChanQueueSubscribe). An async subscription would cost a goroutine and a
// pending list per NATS subscription, so per distinct filter and per shared
// member held on the node; a channel subscription costs neither, and NATS
// still carries only the subjects some node subscribed to, and still picks
// one member per shared group. Each inbox has two goroutines: one moves
// messages from the channel to a queue bounded in messages and bytes, the
// other handles them in the order the node's NATS connection received them,
// whichever filters they matched.

// Limits of one inbox. nats.go never blocks on its channel: a message that
// finds it full is dropped as a slow consumer (natsError counts it), as is
// one that finds the queue full (counted here); both are
// mqlb_node_dropped_total{reason="mesh_slow_consumer"}. The channel only
// bridges scheduling gaps of the forwarding goroutine; the queue absorbs
// bursts the handler is slower than.
const (
	inboxChan     = 1 << 16 // pointers; only the part a burst reaches is touched
	inboxMessages = 1 << 20
	inboxBytes    = 256 << 20
)

type meshInbox struct {
	ch     chan *nats.Msg
	ready  chan struct{} // a token when the queue has something
	mu     sync.Mutex
	queue  []*nats.Msg
	bytes  int // queued and being handled
	handle func(*nats.Msg)

	maxMessages, maxBytes int // queued; bytes of subjects and payloads
}

func newMeshInbox(handle func(*nats.Msg)) *meshInbox {
	return &meshInbox{ch: make(chan *nats.Msg, inboxChan), ready: make(chan struct{}, 1), handle: handle,
		maxMessages: inboxMessages, maxBytes: inboxBytes}
}

// start runs the inbox's two goroutines until ctx ends.
func (in *meshInbox) start(ctx context.Context, n *Node) {
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		in.forward(ctx, n)
	}()
	go func() {
		defer n.wg.Done()
		in.serve(ctx)
	}()
}

func (in *meshInbox) forward(ctx context.Context, n *Node) {
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-in.ch:
			size := len(msg.Subject) + len(msg.Data)
			in.mu.Lock()
			full := len(in.queue) >= in.maxMessages || in.bytes+size > in.maxBytes
			if !full {
				in.queue = append(in.queue, msg)
				in.bytes += size
			}
			in.mu.Unlock()
			if full {
				n.metrics.dropped("mesh_slow_consumer")
				n.warnEvery("mesh too slow: messages dropped", "subject", msg.Subject)
				continue
			}
			select {
			case in.ready <- struct{}{}:
			default:
			}
		}
	}
}

func (in *meshInbox) serve(ctx context.Context) {
	var spare []*nats.Msg
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.ready:
		}
		in.mu.Lock()
		batch := in.queue
		in.queue = spare[:0]
		in.mu.Unlock()
		size := 0
		for i, msg := range batch {
			size += len(msg.Subject) + len(msg.Data)
			in.handle(msg)
			batch[i] = nil
		}
		in.mu.Lock()
		in.bytes -= size
		in.mu.Unlock()
		spare = nil
		if cap(batch) <= 4096 {
			spare = batch // reused; a burst's large array is let go
		}
	}
}

// startInboxes creates the mesh's inboxes and starts them until the node
// stops.
func (m *mesh) startInboxes(ctx context.Context) {
	m.plainIn = newMeshInbox(m.onPlain)
	m.sharedIn = newMeshInbox(func(msg *nats.Msg) {
		mb, ok := m.member(msg.Sub)
		if !ok {
			return // the member left: the message was for it alone
		}
		// While the member is recorded the sentinel stays (select.go); the
		// read lock keeps it until the copy is delivered.
		m.sentMu.RLock()
		defer m.sentMu.RUnlock()
		if _, ok := m.memberOf.Load(msg.Sub); ok {
			m.onShared(mb, msg)
		}
	})
	m.plainIn.start(ctx, m.n)
	m.sharedIn.start(ctx, m.n)
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

// subscribePlain subscribes the data connection to one subject of a plain
// filter.
func (m *mesh) subscribePlain(subject string) (*nats.Subscription, error) {
	return m.data.ChanSubscribe(subject, m.plainIn.ch)
}

// subscribeMember subscribes the queue connection to one subject of a
// shared member's filter, in the shared subscription's queue group.
func (m *mesh) subscribeMember(mb member, subject string) (*nats.Subscription, error) {
	sub, err := m.queue.ChanQueueSubscribe(subject, meshwire.QueueName(mb.filter), m.sharedIn.ch)
	if err == nil {
		m.memberOf.Store(sub, mb)
	}
	return sub, err
}
