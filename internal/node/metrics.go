package node

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqlb/mqlb/internal/certinfo"
)

// metrics are the node's counters, kept in atomics on the hot paths and
// exposed through a per-node Prometheus registry (several nodes can run in
// one process, as under mqlb up), prefix mqlb_node_, labelled node=<name>.
type metrics struct {
	reg *prometheus.Registry

	connects          atomic.Int64
	messagesIn        atomic.Int64 // publishes received from clients
	meshOut           atomic.Int64 // messages sent to the mesh
	meshIn            atomic.Int64 // copies received from the mesh (before de-duplication)
	meshDuplicates    atomic.Int64 // copies dropped as duplicates
	meshBatches       atomic.Int64 // mesh batches sent (meshOut)
	meshSharedSkipped atomic.Int64 // shared copies already served on the publishing node
	retainedUnstored  atomic.Int64 // retained publishes not written to the bucket
	slowConsumers     atomic.Int64 // client connections closed at mqtt.max_queued_bytes
	takeovers         *labelled
	drops             *labelled
	certs             *certinfo.Collector // mqlb_tls_cert_expiry_seconds, set at start and on reload
}

// Reasons a message is dropped (mqlb_node_dropped_total{reason}).
var dropReasons = []string{
	"offline_queue_full", "client_queue_full", "message_expired", "session_expired", "retained_limit",
	"too_large", "malformed", "mesh_unavailable", "mesh_slow_consumer", "qos0_late", "no_shared_member",
	"handover_too_large", "inflight_full", "not_authorized",
}

var takeoverResults = []string{"handed_over", "kicked", "not_found", "owner_gone"}

// labelled is a set of counters, one per known label value.
type labelled struct{ m sync.Map }

func newLabelled(values []string) *labelled {
	l := new(labelled)
	for _, v := range values {
		l.m.Store(v, new(atomic.Int64))
	}
	return l
}

// With returns the counter for v (v must be one of the known values).
func (l *labelled) With(v string) *atomic.Int64 {
	c, _ := l.m.Load(v)
	return c.(*atomic.Int64)
}

func (m *metrics) dropped(reason string)         { m.drops.With(reason).Add(1) }
func (m *metrics) droppedN(reason string, n int) { m.drops.With(reason).Add(int64(n)) }

func newMetrics(n *Node) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), takeovers: newLabelled(takeoverResults), drops: newLabelled(dropReasons)}
	labels := prometheus.Labels{"node": n.name}
	m.counter("connects_total", "Client connections accepted.", labels, m.connects.Load)
	m.counter("messages_in_total", "PUBLISH packets received from clients.", labels, m.messagesIn.Load)
	m.counter("messages_out_total", "PUBLISH packets sent to clients.", labels, func() int64 {
		return atomic.LoadInt64(&n.broker.Info.MessagesSent)
	})
	m.counter("mesh_messages_out_total", "Messages sent to the mesh.", labels, m.meshOut.Load)
	m.counter("mesh_messages_in_total", "Message copies received from the mesh, before de-duplication.", labels, m.meshIn.Load)
	m.counter("mesh_batches_out_total", "Mesh batches sent: NATS messages that carried several publishes to one topic (mesh.batch).", labels, m.meshBatches.Load)
	m.counter("mesh_duplicates_total", "Mesh copies dropped because the message was already delivered here.", labels, m.meshDuplicates.Load)
	m.counter("mesh_shared_skipped_total", "Shared-subscription copies skipped: the publishing node served the group.", labels, m.meshSharedSkipped.Load)
	m.counter("queue_publishes_total", "QoS 1/2 publishes stored in the replicated session queue (sessions.durability replicated).", labels, func() int64 {
		p, _ := n.durable.Stored()
		return p
	})
	m.counter("queue_messages_total", "Session queue stream messages those publishes went in: a batch holds several publishes to one topic.", labels, func() int64 {
		_, msgs := n.durable.Stored()
		return msgs
	})
	m.counter("queue_retries_total", "Session queue writes tried again after failing while the stream had no leader (an election): the publishes waited instead of being refused.", labels, func() int64 {
		return n.durable.Retried()
	})
	m.counter("queue_replica_misses_total", "Session queue messages read from the stream's leader because the replica read lacked them.", labels, func() int64 {
		return n.durable.ReplicaMisses() // (n.durable is set after the metrics)
	})
	m.counter("slow_consumers_total", "Client connections closed as slow consumers: more than mqtt.max_queued_bytes waited to be written to them.", labels, m.slowConsumers.Load)
	m.counter("retained_unstored_total", "Retained publishes that could not be written to the cluster store.", labels, m.retainedUnstored.Load)
	for _, r := range dropReasons {
		get := m.drops.With(r).Load
		if r == "inflight_full" { // mochi counts the QoS 1/2 deliveries it refuses at mqtt.max_inflight
			get = func() int64 { return m.drops.With(r).Load() + atomic.LoadInt64(&n.broker.Info.InflightDropped) }
		}
		m.counter("dropped_total", "Messages dropped, by reason.", with(labels, "reason", r), get)
	}
	for _, r := range takeoverResults {
		m.counter("takeovers_total", "Sessions taken over from another node, by result.", with(labels, "result", r), m.takeovers.With(r).Load)
	}
	m.nodeGauges(n, labels)
	m.opsMetrics(n, labels)
	return m
}

func (m *metrics) nodeGauges(n *Node, labels prometheus.Labels) {
	m.gauge("connections", "Connected clients.", labels, func() float64 { return float64(atomic.LoadInt64(&n.broker.Info.ClientsConnected)) })
	for _, state := range []string{"online", "offline"} {
		m.gauge("sessions", "Sessions held on this node.", with(labels, "state", state), func() float64 {
			on, off := n.sessions.Counts()
			return float64(map[string]int{"online": on, "offline": off}[state])
		})
	}
	m.gauge("retained", "Retained messages held on this node.", labels, func() float64 { return float64(retainedCount(n.broker)) })
	m.gauge("subscriptions", "Client subscriptions on this node.", labels, func() float64 {
		return float64(atomic.LoadInt64(&n.broker.Info.Subscriptions))
	})
	m.gauge("mesh_subscriptions", "NATS subscriptions held for local interest.", labels, func() float64 {
		if n.mesh == nil {
			return 0
		}
		return float64(n.mesh.nsubs.Load())
	})
	m.gauge("up", "1 when listeners, mesh and store are up.", labels, func() float64 {
		if n.healthy() == nil {
			return 1
		}
		return 0
	})
}

func (m *metrics) counter(name, help string, labels prometheus.Labels, get func() int64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mqlb_node_" + name, Help: help, ConstLabels: labels,
	}, func() float64 { return float64(get()) }))
}

func (m *metrics) gauge(name, help string, labels prometheus.Labels, get func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mqlb_node_" + name, Help: help, ConstLabels: labels,
	}, get))
}

// with returns base plus one label.
func with(base prometheus.Labels, k, v string) prometheus.Labels {
	l := prometheus.Labels{k: v}
	for bk, bv := range base {
		l[bk] = bv
	}
	return l
}
