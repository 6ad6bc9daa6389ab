package node

import (
	"slices"
	"testing"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestResumedQueueInOrder: messages queued for a disconnected session on
// one node (sessions.durability: memory) come back in the order they were
// published [MQTT-4.6.0-2]. mochi resends its store sorted by the second
// each was queued, with an unstable sort: 21 of 50 came back out of order.
func TestResumedQueueInOrder(t *testing.T) {
	n := soloNode(t, func(c *config.Node) { c.Sessions.Durability = "memory" })
	addr := n.ListenerAddr("tcp")
	sub := dialV3(t, addr, "ro-sub", false)
	sub.sub(t, "ro/#", 1)
	sub.Disconnect(0)
	testutil.Eventually(t, waitFor, func() bool { return cl0(n, "ro-sub") == nil || cl0(n, "ro-sub").Closed() }, "ro-sub disconnected")
	pub := dialV3(t, addr, "ro-pub", true)
	want := numbered("m", 0, 50)
	for _, p := range want {
		pub.send(t, "ro/t", 1, false, p)
	}
	testutil.Eventually(t, waitFor, func() bool { return cl0(n, "ro-sub").State.Inflight.Len() == len(want) }, "50 queued (have %d)", cl0(n, "ro-sub").State.Inflight.Len())
	back := dialV3(t, addr, "ro-sub", false)
	got := back.wait(t, len(want))
	var payloads []string
	for _, m := range got {
		payloads = append(payloads, m.payload)
	}
	if !slices.Equal(payloads, want) {
		t.Errorf("resumed queue out of order:\n%v", payloads)
	}
}
