package node

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// memoryCluster starts a 2-node cluster with sessions.durability memory,
// where the node holds its sentinel subscription only while it needs it.
func memoryCluster(t *testing.T, name string) *cluster {
	t.Helper()
	c, err := startCluster(name, 2, func(cfg *config.Node) { cfg.Sessions.Durability = "memory" })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	c.ready(t)
	return c
}

// sentinelHeld reports whether mochi consults the node's hook on a publish
// matching nothing else: the sentinel is in its topic index.
func sentinelHeld(n *Node) bool {
	_, ok := n.broker.Topics.Subscribers("sentinel-probe/x").Shared[sentinelFilter]
	return ok
}

// TestSentinelOnlyWhileNeeded: with durability memory the sentinel goes once
// nothing needs it, comes back with a shared member (a queue copy for a
// member that has just left must not reach plain subscribers) and with a
// delayed will, and goes again after.
func TestSentinelOnlyWhileNeeded(t *testing.T) {
	c := memoryCluster(t, "sentinel")
	n := c.nodes[0]
	testutil.Eventually(t, waitFor, func() bool { return !sentinelHeld(n) }, "sentinel dropped at start")

	plain := dialV5(t, c.addr(0), "sentinel-plain", true, 0)
	plain.sub(t, "sentinel/t", 1)
	// A member the mesh still records while mochi no longer has it: the
	// moment between a member's UNSUBSCRIBE and OnUnsubscribed.
	const filter = "$share/g/sentinel/t"
	if !n.mesh.subscribe("sentinel-gone", filter) {
		t.Fatal("mesh subscribe of a new member: false")
	}
	if !sentinelHeld(n) {
		t.Fatal("no sentinel with a shared member recorded")
	}
	id := meshwire.MsgID{Origin: "sentinel-test", Seq: 1}
	n.mesh.sentMu.RLock()
	n.mesh.inject(&meshwire.Envelope{ID: id, Topic: "sentinel/t", QoS: 1, Payload: []byte("queue copy")}, n.mesh.sharedCl,
		meshwire.Tag{ID: id, Member: meshwire.Member{Client: "sentinel-gone", Filter: filter}})
	n.mesh.sentMu.RUnlock()
	pub := dialV5(t, c.addr(0), "sentinel-pub", true, 0)
	pub.send(t, "sentinel/t", 1, "fence")
	plain.waitPayload(t, "fence")
	if got := payloadsOn(plain.all(), "sentinel/t"); len(got) != 1 {
		t.Fatalf("plain subscriber got %q: want only the fence (the queue copy was for a shared member)", got)
	}
	n.mesh.unsubscribe("sentinel-gone", filter)
	testutil.Eventually(t, time.Second, func() bool { return !sentinelHeld(n) }, "sentinel dropped after the last shared member left")

	delay := uint32(2)
	dying := dialV5(t, c.addr(0), "sentinel-will", true, 60, func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "sentinel/will", QoS: 1, Payload: []byte("will")}
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
	})
	dying.TerminateConnectionForTest()
	testutil.Eventually(t, waitFor, func() bool { return sentinelHeld(n) }, "sentinel held for a delayed will")
	n.mesh.willUntil.Store(time.Now().Unix() - 1) // as if the will were long due
	n.mesh.dropSentinel()
	testutil.Eventually(t, time.Second, func() bool { return !sentinelHeld(n) }, "sentinel dropped after the delayed will's time")
}

// TestDelayedWillOfMovedSessionMemory is TestDelayedWillOfMovedSession with
// durability memory, where only the delayed will brings the sentinel back.
func TestDelayedWillOfMovedSessionMemory(t *testing.T) {
	c := memoryCluster(t, "movedwill")
	testutil.Eventually(t, waitFor, func() bool { return !sentinelHeld(c.nodes[0]) }, "sentinel dropped at start")
	movedWill(t, c, 0, 1, []int{0, 1})
}
