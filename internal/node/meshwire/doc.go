// Package meshwire owns the pure wire pieces of the node mesh: the NATS
// subjects a node publishes and subscribes on (subject.go), the envelope a
// message travels in between nodes and through the replicated store
// (envelope.go), a message's id and the tag that carries it through the
// local broker inside a PUBLISH packet (tag.go), and the sliding window that
// lets one copy of each message through (dedupe.go). It knows nothing of a
// node, a broker or a NATS connection; mochi-mqtt's packets types are its
// only dependency.
package meshwire
