package node

import (
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// willGate holds mochi's sendLWT of one client in OnWill (after mochi has
// checked the will flag and copied the will, before it queues the will on
// its timer: the client is not Closed yet), and notes when mochi publishes
// that client's delayed will (OnSelectSubscribers: the node holds its
// sentinel while a delayed will is pending, so mochi asks the hooks).
type willGate struct {
	mqtt.HookBase
	id      string
	entered chan struct{} // closed when sendLWT of id is in OnWill
	release chan struct{} // closed to let it go on
	fired   chan struct{} // closed when mochi's timer publishes id's delayed will
	to      int           // how many local subscribers mochi was to deliver it to (set before fired closes)

	enterOnce, releaseOnce, fireOnce sync.Once
}

func newWillGate(id string) *willGate {
	return &willGate{id: id, entered: make(chan struct{}), release: make(chan struct{}), fired: make(chan struct{})}
}

func (g *willGate) ID() string { return "test-will-gate" }
func (g *willGate) Provides(b byte) bool {
	return b == mqtt.OnWill || b == mqtt.OnSelectSubscribers
}

func (g *willGate) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if cl.ID == g.id {
		g.enterOnce.Do(func() { close(g.entered) })
		<-g.release
	}
	return will, nil
}

func (g *willGate) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	if pk.Origin == g.id && pk.Connect.WillProperties.WillDelayInterval > 0 {
		g.fireOnce.Do(func() {
			g.to = len(subs.Subscriptions) + len(subs.SharedSelected) // after the node's hook, which comes first
			close(g.fired)
		})
	}
	return subs
}

func (g *willGate) open() { g.releaseOnce.Do(func() { close(g.release) }) }

// await waits for ch until waitFor.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatalf("not within %v: %s", waitFor, what)
	}
}

// TestDelayedWillMovedWhileSending is the interleaving that failed
// TestDelayedWillOfMovedSessionMemory now and then: the connection of a
// client with a delayed will ends, and while mochi is in sendLWT (the client
// not Closed yet, the will copied but not yet queued) another node takes the
// session over. mochi then queues the will on its timer; it must not be
// published when it is due [MQTT-3.1.3-9], on either node.
func TestDelayedWillMovedWhileSending(t *testing.T) {
	c := memoryCluster(t, "willsending")
	const id = "moved-will-sending"
	var subs []*v5
	for i := range c.nodes {
		s := dialV5(t, c.addr(i), "moved-will-sending-sub"+string(rune('0'+i)), true, 0)
		s.sub(t, "moved-will/+", 1)
		subs = append(subs, s)
	}
	gate := newWillGate(id)
	if err := c.nodes[0].broker.AddHook(gate, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gate.open) // never leave mochi's goroutine held

	delay := uint32(1)
	dying := dialV5(t, c.addr(0), id, true, 60, func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "moved-will/w", QoS: 1, Payload: []byte("will")}
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
	})
	dying.TerminateConnectionForTest()
	await(t, gate.entered, "mochi in sendLWT for the ended connection")
	if cl := cl0(c.nodes[0], id); cl == nil || cl.Closed() {
		t.Fatal("node 0's client is gone or Closed: sendLWT must run before Stop")
	}

	back := dialV5(t, c.addr(1), id, false, 60) // the takeover: node 0 gives the session up meanwhile
	if !back.connack.SessionPresent {
		t.Fatal("session present = 0")
	}
	if cl := cl0(c.nodes[0], id); cl != nil {
		t.Fatal("node 0 still holds the session after the takeover")
	}
	gate.open() // mochi queues the delayed will now, after the session moved
	await(t, gate.fired, "mochi's timer publishing the delayed will")
	if gate.to > 0 {
		t.Errorf("node 0 selected %d local subscribers for the will of a session that moved", gate.to)
	}

	pub := dialV5(t, c.addr(1), "moved-will-sending-pub", true, 0)
	pub.send(t, "moved-will/fence", 1, "fence")
	for i, s := range subs {
		s.waitPayload(t, "fence")
		if got := payloadsOn(s.all(), "moved-will/w"); len(got) > 0 {
			t.Errorf("subscriber on node %d got the will of a session that moved: %q", i, got)
		}
	}
}
