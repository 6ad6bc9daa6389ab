package node

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/node/meshwire"
)

// TestLateQoS0FromMeshDropped: a QoS 0 message from another node that took
// more than mesh.qos0_max_delay (5 s) longer than that node's quickest
// recent ones is dropped and counted; on time, or QoS 1, it is delivered;
// with the bound at 0 a late one is delivered too.
func TestLateQoS0FromMeshDropped(t *testing.T) {
	c := shared(t)
	n := c.nodes[0]
	sub := dialV5(t, c.addr(0), "late-sub", true, 0)
	sub.sub(t, "late/#", 1)
	var seq uint64
	send := func(payload string, qos byte, sent time.Time) {
		seq++
		e := meshwire.Envelope{ID: meshwire.MsgID{Origin: "late-origin", Seq: seq}, Topic: "late/t", QoS: qos,
			Sent: sent.UnixMilli(), Payload: []byte(payload)}
		n.mesh.onPlain(&nats.Msg{Subject: "late", Data: meshwire.AppendEnvelope(nil, &e)})
	}
	drops := func() int64 { return n.metrics.drops.With("qos0_late").Load() }
	before := drops()
	send("on time", 0, time.Now())
	send("10 s late", 0, time.Now().Add(-10*time.Second))
	send("10 s late, QoS 1", 1, time.Now().Add(-10*time.Second))
	send("after", 0, time.Now())
	sub.waitPayload(t, "after")
	sub.waitPayload(t, "10 s late, QoS 1")
	got := []string{}
	for _, m := range sub.all() {
		got = append(got, m.payload)
	}
	if slices.Contains(got, "10 s late") || !slices.Contains(got, "on time") {
		t.Errorf("received %q: want the late QoS 0 message dropped, the others delivered", got)
	}
	if d := drops() - before; d != 1 {
		t.Errorf("dropped_total{reason=qos0_late} went up by %d, want 1", d)
	}

	old := n.mesh.maxDelay.Swap(0)
	defer n.mesh.maxDelay.Store(old)
	send("10 s late, no bound", 0, time.Now().Add(-10*time.Second))
	sub.waitPayload(t, "10 s late, no bound")
}
