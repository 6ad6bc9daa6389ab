// Package session owns a node's client sessions as the cluster sees them:
//
//   - the session registry, one record per client id in the replicated
//     store, naming the node that owns the session (registry.go);
//   - the tracker of sessions on this node: claiming a client id before the
//     CONNACK, its record's subscriptions, the queue order of its messages
//     and max_offline_messages, expiry (sessions.go, Tracker);
//   - takeover of a session from the node that owns it, over a NATS request
//     (takeover.go), and installing what it hands over into the local broker
//     (install.go); adopting the sessions of an earlier run of this node
//     (adopt.go);
//   - with sessions.durability replicated, durable sessions: the queue
//     stream, an anchor consumer per session (durable.go, consumer.go),
//     storing publishes (publish.go), reading the stream and delivering
//     (deliver.go, reader.go), moving the anchor as the client acknowledges
//     (ack.go), and the replicated QoS 2 state (qos2.go);
//   - holding a resuming client's CONNECT while the registry has no leader,
//     rather than refusing it at once (wait.go).
//
// The node's mochi hook calls into it. It gets what it uses through Env —
// the local broker, the replicated store, the mesh's interest and control
// connection, a logger and counters — and knows nothing of the node itself.
package session
