package node

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// exactly fails unless the messages received before the fence payload are
// exactly want, each once. The fence must be published after the others on
// the same topic by the same client, so [MQTT-4.6.0-5] ordering puts every
// copy of them (duplicates included) before it.
func exactly(t *testing.T, got []received, fence string, want []string) {
	t.Helper()
	var payloads []string
	for _, m := range got {
		if m.payload == fence {
			break
		}
		payloads = append(payloads, m.payload)
	}
	slices.Sort(payloads)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(payloads, want) {
		t.Fatalf("received %q\nwant exactly %q", payloads, want)
	}
}

func TestCrossNodeQoS(t *testing.T) {
	c := shared(t)
	pub := dialV5(t, c.addr(0), "qos-pub", true, 0)
	subs := make([]*v5, 3)
	for q := range subs {
		subs[q] = dialV5(t, c.addr(1), fmt.Sprintf("qos-sub%d", q), true, 0)
		subs[q].sub(t, fmt.Sprintf("qos/s%d/#", q), byte(q))
	}
	for sq := range 3 {
		for pq := range 3 {
			topic := fmt.Sprintf("qos/s%d/p%d", sq, pq)
			var want []string
			for i := range 5 {
				p := fmt.Sprintf("%s#%d", topic, i)
				want = append(want, p)
				pub.send(t, topic, byte(pq), p)
			}
			pub.send(t, topic, byte(pq), topic+"#fence")
			subs[sq].waitPayload(t, topic+"#fence")
			var got []received
			for _, m := range subs[sq].all() {
				if m.topic == topic {
					got = append(got, m)
				}
			}
			exactly(t, got, topic+"#fence", want)
			for _, m := range got {
				if wantQ := byte(min(sq, pq)); m.qos != wantQ {
					t.Errorf("%s: %q delivered at QoS %d, want min(granted %d, published %d) = %d", topic, m.payload, m.qos, sq, pq, wantQ)
				}
			}
		}
	}
}

func TestCrossNodeWildcardsAndDollarTopics(t *testing.T) {
	c := shared(t)
	pub := dialV5(t, c.addr(0), "wild-pub", true, 0)
	overlap := dialV5(t, c.addr(2), "wild-overlap", true, 0)
	for _, f := range []string{"wild/+/x", "wild/#", "wild/a/x", "+/a/x"} {
		overlap.sub(t, f, 1) // four filters match wild/a/x: still one delivery
	}
	hash := dialV5(t, c.addr(1), "wild-hash", true, 0)
	hash.sub(t, "#", 1)
	plus := dialV5(t, c.addr(1), "wild-plus", true, 0)
	plus.sub(t, "+/bar", 1)
	dollar := dialV5(t, c.addr(2), "wild-dollar", true, 0)
	dollar.sub(t, "$foo/#", 1)

	for _, topic := range []string{"wild/a/x", "wild", "wild/b/c/d", "$foo/bar", "other/bar"} {
		pub.send(t, topic, 1, topic)
	}
	// Order holds per topic only [MQTT-4.6.0-5]: wait for each, then fence
	// the topic that several filters match.
	overlap.waitPayload(t, "wild")
	overlap.waitPayload(t, "wild/b/c/d")
	pub.send(t, "wild/a/x", 1, "fence")
	overlap.waitPayload(t, "fence")
	exactly(t, overlap.all(), "fence", []string{"wild/a/x", "wild", "wild/b/c/d"})

	pub.send(t, "$foo/bar", 1, "$fence") // after $foo/bar on the same topic
	dollar.waitPayload(t, "$fence")
	exactly(t, dollar.all(), "$fence", []string{"$foo/bar"})
	hash.waitPayload(t, "fence") // "#" is one NATS subscription: a $foo/bar copy would come first
	for _, m := range hash.all() {
		if m.topic[0] == '$' {
			t.Errorf("# matched %q [MQTT-4.7.2-1]", m.topic)
		}
	}
	plus.waitPayload(t, "other/bar")
	pub.send(t, "other/bar", 1, "plus-fence")
	plus.waitPayload(t, "plus-fence")
	exactly(t, plus.all(), "plus-fence", []string{"other/bar"})
}

func TestCrossNodeV5Properties(t *testing.T) {
	c := shared(t)
	pub := dialV5(t, c.addr(0), "props-pub", true, 0)
	sub := dialV5(t, c.addr(1), "props-sub", true, 0)
	sub.sub(t, "props/t", 1)
	format, expiry := byte(1), uint32(300)
	pub.pub(t, &paho.Publish{Topic: "props/t", QoS: 1, Payload: []byte("{}"), Properties: &paho.PublishProperties{
		ContentType: "application/json", ResponseTopic: "props/reply", CorrelationData: []byte{0, 1, 0xff},
		PayloadFormat: &format, MessageExpiry: &expiry,
		User: paho.UserProperties{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2\r\nx"}, {Key: "ü", Value: ""}},
	}})
	got := sub.wait(t, 1)[0].v5.Properties
	if got == nil {
		t.Fatal("no properties")
	}
	if got.ContentType != "application/json" || got.ResponseTopic != "props/reply" || string(got.CorrelationData) != "\x00\x01\xff" {
		t.Errorf("content type %q, response topic %q, correlation %q", got.ContentType, got.ResponseTopic, got.CorrelationData)
	}
	if got.PayloadFormat == nil || *got.PayloadFormat != 1 {
		t.Errorf("payload format %v, want 1", got.PayloadFormat)
	}
	if got.MessageExpiry == nil || *got.MessageExpiry == 0 || *got.MessageExpiry > 300 {
		t.Errorf("message expiry %v, want the remaining part of 300 [MQTT-3.3.2-6]", got.MessageExpiry)
	}
	want := paho.UserProperties{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2\r\nx"}, {Key: "ü", Value: ""}}
	if !slices.Equal(got.User, want) {
		t.Errorf("user properties %v, want %v in order [MQTT-3.3.2-18]", got.User, want)
	}
}

func TestMeshCarriesOnlyWhatNodesWant(t *testing.T) {
	c := shared(t)
	pub := dialV5(t, c.addr(0), "interest-pub", true, 0)
	sub := dialV5(t, c.addr(1), "interest-sub", true, 0)
	sub.sub(t, "interest/+", 0)
	// The SUBACK came after every node learned the interest (syncInterest).
	for _, i := range []int{0, 2} {
		if !c.nodes[i].ns.GlobalAccount().SubscriptionInterest(c.nodes[i].mesh.subj.Topic("interest/a")) {
			t.Errorf("node %d does not know node 2's new interest when the SUBACK arrives", i+1)
		}
	}
	before := [3]int64{}
	for i, n := range c.nodes {
		before[i] = n.metrics.meshIn.Load()
	}
	for i := range 10 {
		pub.send(t, "interest/a", 0, fmt.Sprint(i))
	}
	pub.send(t, "interest/a", 1, "fence")
	sub.waitPayload(t, "fence")
	if got := c.nodes[1].metrics.meshIn.Load() - before[1]; got != 11 {
		t.Errorf("interested node received %d mesh messages, want 11", got)
	}
	if got := c.nodes[2].metrics.meshIn.Load() - before[2]; got != 0 {
		t.Errorf("node without interest received %d mesh messages, want 0", got)
	}
	if got := c.nodes[0].metrics.meshIn.Load() - before[0]; got != 0 {
		t.Errorf("publishing node received %d of its own messages back, want 0 (no echo)", got)
	}
}

// TestReceiveMaximumDoesNotStall: a v5 subscriber with a small Receive
// Maximum used to deadlock mochi v2.7.9 (and with it the node's mesh
// deliveries) under concurrent QoS 1 traffic; see hook.OnSessionEstablished.
func TestReceiveMaximumDoesNotStall(t *testing.T) {
	c := shared(t)
	recvMax := uint16(4)
	sub := dialV5(t, c.addr(1), "recvmax-sub", true, 0, func(cp *paho.Connect) {
		cp.Properties = &paho.ConnectProperties{ReceiveMaximum: &recvMax}
	})
	sub.sub(t, "recvmax/t", 1)
	const total = 1600
	var wg sync.WaitGroup
	for w := range 8 {
		pub := dialV5(t, c.addr(w%3), fmt.Sprintf("recvmax-pub%d", w), true, 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range total / 8 {
				if _, err := pub.Publish(t.Context(), &paho.Publish{Topic: "recvmax/t", QoS: 1, Payload: fmt.Appendf(nil, "%d-%d", w, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	sub.wait(t, total)
}
