// Package node is one mqlb broker node: a mochi-mqtt v2 server (MQTT 3.1.1
// and 5.0) joined to the other nodes of its cluster by a mesh over NATS.
//
// # Mesh
//
// Each node embeds a nats-server (routes to its peers on mesh.listen,
// JetStream in data_dir/jetstream) or uses an external NATS cluster
// (mesh.url). A node has three NATS connections: data (publishes and plain
// subscriptions, NoEcho), queue (shared subscription members) and ctrl
// (JetStream, takeover requests, interest sync; NoEcho).
//
// # Layout
//
// This package assembles the node (node.go, broker.go), runs its mochi hook
// (hooks.go, conformance.go, flow.go, select.go), the mesh (mesh.go,
// meshin.go), retained messages (retained.go) and the admin API. Pieces with
// no reference to the node live in packages of their own, each given only
// what it uses: meshwire (the mesh's wire formats), store (the JetStream
// buckets and stream), session (registry, takeover, durable sessions; the
// node hands it a session.Env, sessionenv.go), auth, listen and inbound.
//
// A publish accepted from a local client is delivered locally by mochi and
// sent once to NATS on the subject of its topic (meshwire.Subjects: one
// token per topic level, escaped; '$' topics in their own subtree so
// wildcards cannot match them [MQTT-4.7.2-1]). The payload is an envelope
// (meshwire.Envelope): the message id (meshwire.MsgID: origin instance and
// sequence), topic, QoS, retain, the v5 properties that travel with a
// message, the remaining message expiry, and the shared subscriptions
// already served on the origin. For every distinct filter its local sessions
// hold (connected or not, reference-counted by client), a node subscribes on
// the filter's subjects ("+" → "*", "#" → ">" plus the parent level); only
// nodes with matching interest receive a message. A message matching several
// of a node's subscriptions arrives once per subscription: a per-origin
// sliding window over sequence numbers (meshwire.ReplayWindow) lets the
// first copy through, which is injected into the local broker by an inline
// client and fanned out to every local subscriber at min(publish QoS,
// granted QoS). NoEcho keeps a node's own publishes from coming back;
// injected messages are never sent to the mesh again. Inside the broker a
// PUBLISH carries its id as a meshwire.Tag (with the one shared member a
// queue copy is for), which mochi keeps with the packet in inflight queues,
// so a handed-over session still knows its messages' ids.
//
// Before mochi answers a SUBSCRIBE that created new NATS interest, the node
// waits until every peer has seen it (a ping that follows the subscription
// over the same routes), so a message published anywhere after the SUBACK
// reaches the subscriber.
//
// # Shared subscriptions
//
// Every member of "$share/{group}/{filter}" holds a NATS queue subscription
// (queue name from the whole shared filter) on the filter's subjects, so NATS
// picks one member per message cluster-wide, weighted by where members are.
// With local_first the publishing node serves groups that have a connected
// member there and names them in the envelope; other nodes skip those. With
// round_robin and random the publishing node serves nothing itself and the
// NATS pick decides (round_robin then takes the chosen node's members in
// turn, random keeps the member NATS picked). mochi only consults
// OnSelectSubscribers when shared subscriptions match, so while it needs the
// hook on every publish (replicated durability, a shared member here, a
// delayed will pending) the node holds a sentinel shared subscription on "#"
// that makes mochi consult it (select.go): a plain-subscriber copy gets no
// shared groups, a queue copy gets only its group.
//
// # Retained messages
//
// The key-value bucket mqlb_<cluster>_retained is the truth; every node
// applies it to mochi's local store with a watcher, so new subscribers on
// any node get retained messages, an empty payload clears one everywhere,
// and they survive restarts of a node or of the whole cluster. Before a new
// subscription gets its retained messages, the node waits until its copy has
// applied every write the bucket had when the SUBSCRIBE came
// (retained.caughtUp): a subscriber arriving after the PUBACK of an
// overwrite or delete made on another node never reads the older value.
//
// # Sessions
//
// The bucket mqlb_<cluster>_sessions maps a client id to the node that owns
// its session, with its subscriptions and expiry (session/registry.go);
// every write is a compare-and-set. A client connecting to node C whose
// session node A owns is taken over (session/takeover.go, install.go): A closes the old connection
// (v5 DISCONNECT 0x8E) and hands over subscriptions and queued messages, C
// installs them so mochi answers session present 1. If A is gone, the
// subscriptions are restored from the registry; with sessions.durability
// memory the messages queued on A are lost, with replicated they are in the
// queue stream, held for the session by its anchor (below). A clean start only has the old connection closed: one
// connection per client id cluster-wide. A restarted node takes back, as
// disconnected sessions, the persistent sessions its earlier run owned
// (session/adopt.go). While the registry cannot be read (not formed yet, or no
// JetStream quorum), a client asking to resume its session is refused with
// CONNACK "server unavailable" rather than given an empty session (hooks.go
// OnConnect); clean-start clients are taken, their sessions kept local. After
// a store failure the node skips the store for a few seconds, so connects do
// not each wait for a timeout.
//
// # Durable sessions
//
// With sessions.durability replicated (package session: durable.go and the
// files it names), every QoS 1/2 publish of
// a local client is stored in the stream mqlb_<cluster>_queue before mochi
// acknowledges it (hook OnPublish), and each persistent session has an
// anchor: a durable consumer of that stream filtered on its QoS 1/2
// subscriptions, never pulled, whose ack floor is the session's replicated
// position (and which keeps what the session still wants in the stream).
// Such sessions get no live copy of those messages (OnSelectSubscribers: the
// copy only wakes the reader); the node holding the session reads the
// stream from its own cursor while the client is connected (direct gets),
// delivers with packet ids derived from stream sequences (a resend after a
// crash keeps its id, DUP set) and moves the anchor's floor as the client
// acknowledges, at most every 50 ms. A session given up to another node
// hands over its exact position; a dead node's sessions resume from the
// anchor's floor.
//
// # Fixes of mochi's behaviour
//
// conformance.go rewrites what mochi v2.7.9 would get wrong: a PUBACK's
// reason is 0x00 (mochi wrote the granted-QoS code 0x01) and acks echo no
// properties (NoInheritedPropertiesOnAck); a QoS 1/2 PUBLISH to $SYS is
// answered (v5 0x87, 3.1.1 acknowledged and dropped) where mochi dropped it
// silently; one to a $share topic is refused (v5 0x90) rather than
// delivered and retained, and a will to one dropped. A QoS 1/2 delivery
// has DUP set only if it was written to the client before (mochi set it on
// a resumed session's whole queue: session/sent.go). A delayed will that
// mochi's timer holds for a session that moved to another node is dropped
// by the select hook (session.Tracker.WillMoved).
// A clean session reconnecting to the same node waits, in
// OnSessionEstablish, until mochi has ended its previous connection
// (reconnect.go): mochi's cleanup could otherwise remove the new client by
// id.
//
// # Listeners and auth
//
// Listeners come from package listen (TCP, TLS, WebSocket, PROXY protocol,
// certificate CN as username); package auth's hook is the only one that
// authenticates and authorizes (broker.go).
//
// # Hostile clients and peers
//
// Every listener's connections reach mochi through package inbound
// (guard.go): mochi sees whole packets only, the first must be a CONNECT of
// at most 256 KiB, and sizes are refused from the fixed header, because mochi
// v2.7.9 allocates whatever a header announces; a malformed SUBSCRIBE or
// UNSUBSCRIBE (an invalid topic filter, ...) is refused there too, a v5
// client told why (DISCONNECT 0x81 or 0x82). The auth hook is wrapped in
// auth.Throttle (failed attempts per address and username; bcrypt capped).
// limits.go caps a client's subscriptions and keeps mochi from sending
// DISCONNECT to 3.1.1 clients. Every log record, mochi's included, passes
// through redact (logsafe.go). Routes present mesh.token and, with
// mesh.tls, certificates of one CA (meshsec.go). The threat model and
// measurements are in docs/security.md.
//
// # Known limits
//
//   - Delivery between nodes is NATS core: at most once. A node that falls
//     too far behind drops (mqlb_node_dropped_total{reason="mesh_slow_consumer"}).
//   - With sessions.durability memory, messages queued for disconnected
//     sessions live in the owning node's memory: lost if that node stops.
//   - The replicated store needs two nodes before it forms when the first
//     node has mesh.listen and no peers; a single node should leave
//     mesh.listen empty (JetStream then runs standalone).
//   - mochi v2.7.9 deadlocks under its Receive Maximum flow control, so the
//     node does its own (flow): mochi parks a client's QoS 1/2 messages and
//     the node sends them as the client has room. Messages mochi resends on
//     resumption are not held back.
//   - Order holds per topic and publisher [MQTT-4.6.0-5], not across topics;
//     a message published while a resumed session's queue is being resent
//     may overtake queued ones (mochi resends after the CONNACK).
//   - mochi shares one packet id space between a client's and its own
//     in-flight messages: a client's SUBSCRIBE whose id matches a QoS 1/2
//     message mochi is sending it is refused with 0x91.
package node
