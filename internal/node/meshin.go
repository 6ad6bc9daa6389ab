package node

import (
	"context"

	"github.com/nats-io/nats.go"
)

// plainInboxSize is how many mesh messages for plain subscriptions may wait
// for the node (all filters together). nats.go never blocks on a full
// channel: a message that finds it full is dropped and counted as a slow
// consumer (mqlb_node_dropped_total{reason="mesh_slow_consumer"}). The
// buffer holds pointers, and only the part a burst reaches is ever touched.
const plainInboxSize = 1 << 16

// The plain subscriptions of a node all deliver into one channel
// (nats.go ChanSubscribe), served by one goroutine. An async subscription
// would cost a goroutine and a pending list per NATS subscription, so per
// distinct filter held on the node; a channel subscription costs neither,
// and NATS still carries only the subjects some node subscribed to. One
// goroutine also keeps every message in the order the node's NATS
// connection received it, whichever filters it matched.

// startPlain starts the goroutine that serves the plain inbox until the
// node stops.
func (m *mesh) startPlain(ctx context.Context) {
	m.n.wg.Add(1)
	go func() {
		defer m.n.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case msg := <-m.inbox:
				m.onPlain(msg)
			}
		}
	}()
}

// subscribePlain subscribes the data connection to one subject of a plain
// filter, delivering into the inbox.
func (m *mesh) subscribePlain(subject string) (*nats.Subscription, error) {
	return m.data.ChanSubscribe(subject, m.inbox)
}
