package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/node/session"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestPubackSuccessWithoutEchoedProperties: a v5 QoS 1/2 PUBLISH with a
// user property is acknowledged with 0x00 and no properties of its own
// [MQTT-3.4.2-1] (mochi wrote 0x01 and echoed the user property).
func TestPubackSuccessWithoutEchoedProperties(t *testing.T) {
	c := shared(t)
	pub := dialV5(t, c.addr(0), "ack-props", true, 0)
	for _, qos := range []byte{1, 2} {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		resp, err := pub.Publish(ctx, &paho.Publish{Topic: "ack/props", QoS: qos, Payload: []byte("x"),
			Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}}})
		cancel()
		if err != nil {
			t.Fatalf("QoS %d publish: %v", qos, err)
		}
		if resp.ReasonCode != 0 {
			t.Errorf("QoS %d: ack reason %#x, want 0x00", qos, resp.ReasonCode)
		}
		if resp.Properties != nil && len(resp.Properties.User) > 0 {
			t.Errorf("QoS %d: ack echoes user properties %v", qos, resp.Properties.User)
		}
	}
}

// TestSysPublishAnswered: a QoS 1/2 PUBLISH to $SYS gets an answer (v5:
// 0x87 not authorized; 3.1.1: acknowledged and dropped) instead of none.
func TestSysPublishAnswered(t *testing.T) {
	c := shared(t)
	v5c := dialV5(t, c.addr(0), "sys-pub-v5", true, 0)
	for _, qos := range []byte{1, 2} {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		resp, _ := v5c.Publish(ctx, &paho.Publish{Topic: "$SYS/mqlb/x", QoS: qos, Payload: []byte("x")})
		cancel()
		if resp == nil || resp.ReasonCode != packets.ErrNotAuthorized.Code {
			t.Errorf("v5 QoS %d: response %+v, want reason 0x87", qos, resp)
		}
	}
	v3c := dialV3(t, c.addr(0), "sys-pub-v3", true)
	for _, qos := range []byte{1, 2} {
		v3c.send(t, "$SYS/mqlb/x", qos, false, "x") // fails the test when no acknowledgement comes
	}
}

// TestNothingBeforeConnack: a message published to a resuming session's
// subscription after mochi put the client in its list, before its CONNACK
// is written, comes after the CONNACK [MQTT-3.2.0-1]: written first, it
// failed the client's connect ("received unexpected packet 3").
func TestNothingBeforeConnack(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	const id = "early-session"
	first := dialV5(t, addr, id, true, 600)
	first.sub(t, "early/t", 0)
	_ = first.Disconnect(&paho.Disconnect{})
	witness := dialV5(t, addr, "early-witness", true, 0)
	witness.sub(t, "early/t", 0)
	pub := dialV5(t, addr, "early-pub", true, 0)

	gate := &connackGate{prefix: id, entered: make(chan string), release: make(chan struct{}), stop: make(chan struct{})}
	if err := n.broker.AddHook(gate, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gate.open) // never leave mochi's goroutine held
	type resumed struct {
		c   *v5
		err error
	}
	res := make(chan resumed, 1)
	go func() {
		c, err := tryV5(addr, id, false, 600)
		res <- resumed{c, err}
	}()
	select {
	case <-gate.entered: // the client is in mochi's list, its CONNACK held
	case <-time.After(waitFor):
		t.Fatal("no CONNACK for the resuming client")
	}
	pub.send(t, "early/t", 0, "early")
	witness.waitPayload(t, "early") // published: queued for the resuming client too
	gate.release <- struct{}{}
	var r resumed
	select {
	case r = <-res:
	case <-time.After(waitFor):
		t.Fatal("resume: no answer")
	}
	if r.err != nil {
		t.Fatalf("resume: %v", r.err)
	}
	t.Cleanup(func() { _ = r.c.Disconnect(&paho.Disconnect{}) })
	if !r.c.connack.SessionPresent {
		t.Error("resume: session present = 0")
	}
	r.c.waitPayload(t, "early")
}

// TestDelayedWillOfMovedSession: a session that moved to another node before
// its will delay ended must not have its will published [MQTT-3.1.3-9],
// neither on the node it left nor anywhere else.
func TestDelayedWillOfMovedSession(t *testing.T) {
	movedWill(t, shared(t), 0, 1, []int{0, 2})
}

// movedWill moves a session with a delayed will pending from node from to
// node to and checks that subscribers on the nodes subs never get the will.
func movedWill(t *testing.T, c *cluster, from, to int, subNodes []int) {
	var subs []*v5
	for _, i := range subNodes {
		s := dialV5(t, c.addr(i), fmt.Sprintf("moved-will-sub%d", i), true, 0)
		s.sub(t, "moved-will/+", 1)
		subs = append(subs, s)
	}
	delay := uint32(1)
	dying := dialV5(t, c.addr(from), "moved-will", true, 60, func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "moved-will/w", QoS: 1, Payload: []byte("will")}
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
	})
	dying.TerminateConnectionForTest() // the will is due in a second
	due := time.Now().Add(time.Duration(delay) * time.Second)
	back := dialV5(t, c.addr(to), "moved-will", false, 60) // the session moves before that
	if !back.connack.SessionPresent {
		t.Fatal("session present = 0")
	}
	// mochi's timer looks at delayed wills once a second: two seconds past due
	// it would have fired.
	testutil.Eventually(t, waitFor, func() bool { return time.Now().After(due.Add(2 * time.Second)) }, "past the will delay")
	pub := dialV5(t, c.addr(to), "moved-will-pub", true, 0)
	pub.send(t, "moved-will/fence", 1, "fence")
	for i, s := range subs {
		s.waitPayload(t, "fence")
		if got := payloadsOn(s.all(), "moved-will/w"); len(got) > 0 {
			t.Errorf("subscriber on node %d got the will of a session that moved: %q", subNodes[i], got)
		}
	}
}

// cl0 returns node n's client id (nil if it has none).
func cl0(n *Node, id string) *mqtt.Client {
	cl, _ := n.broker.Clients.Get(id)
	return cl
}

// manualAcks is a v5 client that acknowledges only when told to.
type manualAcks struct {
	*paho.Client
	mu  sync.Mutex
	got []*paho.Publish
}

func (m *manualAcks) received() []*paho.Publish {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*paho.Publish(nil), m.got...)
}

// ackAll acknowledges every message as it comes until want have come.
func (m *manualAcks) ackAll(t *testing.T, want int) {
	t.Helper()
	for acked := 0; acked < want; {
		testutil.Eventually(t, waitFor, func() bool { return len(m.received()) > acked }, "more after acknowledging %d", acked)
		for _, p := range m.received()[acked:] {
			if err := m.Ack(p); err != nil {
				t.Fatal(err)
			}
			acked++
		}
	}
	if k := len(m.received()); k != want {
		t.Errorf("received %d messages, want %d", k, want)
	}
}

// dialManualAcks connects a v5 client announcing Receive Maximum rm that
// subscribes to filter at QoS 1 and acknowledges nothing by itself.
func dialManualAcks(t *testing.T, addr, id string, rm uint16, expiry uint32, filter string) *manualAcks {
	t.Helper()
	return dialManualAcksSession(t, addr, id, rm, expiry, filter, true)
}

// dialManualAcksSession is dialManualAcks with a choice of Clean Start; a
// resuming client (clean false) with an empty filter subscribes to nothing.
func dialManualAcksSession(t *testing.T, addr, id string, rm uint16, expiry uint32, filter string, clean bool) *manualAcks {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := &manualAcks{}
	m.Client = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn, EnableManualAcknowledgment: true,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			m.mu.Lock()
			m.got = append(m.got, pr.Packet)
			m.mu.Unlock()
			return true, nil
		}},
		OnClientError: func(error) {}})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := m.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, ReceiveMaximum: &rm}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Disconnect(&paho.Disconnect{}) })
	if filter == "" {
		return m
	}
	if _, err := m.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReceiveMaximumHonoured: a persistent v5 session announcing Receive
// Maximum 2 that acknowledges nothing gets 2 of 5 QoS 1 messages, the
// others once it acknowledges [MQTT-3.3.4-9]. (Replicated durability: the
// session's queue holds them back.)
func TestReceiveMaximumHonoured(t *testing.T) {
	c := shared(t)
	n := c.nodes[0]
	if !n.durable.On() {
		t.Skip("sessions.durability memory: see TestReceiveMaximumCleanSession")
	}
	cl := dialManualAcks(t, c.addr(0), "rm-sub", 2, 60, "rm/t")
	pub := dialV5(t, c.addr(1), "rm-pub", true, 0)
	for _, p := range numbered("m", 0, 5) {
		pub.send(t, "rm/t", 1, p)
	}
	// All five are in the session's queue (its anchor holds them), and the
	// node has two in flight to the client and holds the others back.
	testutil.Eventually(t, waitFor, func() bool {
		cons, err := n.store().Queue.Consumer(t.Context(), session.ConsumerName("rm-sub"))
		if err != nil {
			return false
		}
		info, err := cons.Info(t.Context())
		return err == nil && int(info.NumPending)+info.NumAckPending == 5 &&
			len(n.durable.DeliveryIDs(cl0(n, "rm-sub"))) == 2 && len(cl.received()) >= 2
	}, "the node holding 3 of 5 back")
	if k, held := len(cl.received()), len(n.durable.DeliveryIDs(cl0(n, "rm-sub"))); k != 2 || held != 2 {
		t.Fatalf("received %d messages (%d in flight) with Receive Maximum 2 and no acknowledgement", k, held)
	}
	cl.ackAll(t, 5)
}

// TestReceiveMaximumCleanSession: the same for a session that is not kept
// (no replicated queue): the node holds mochi's deliveries back to the
// client's Receive Maximum (mochi's own flow control deadlocks; see flow).
func TestReceiveMaximumCleanSession(t *testing.T) {
	c := shared(t)
	n := c.nodes[0]
	cl := dialManualAcks(t, c.addr(0), "rm-clean-sub", 2, 0, "rm-clean/t")
	pub := dialV5(t, c.addr(1), "rm-clean-pub", true, 0)
	for _, p := range numbered("m", 0, 5) {
		pub.send(t, "rm-clean/t", 1, p)
	}
	mc := cl0(n, "rm-clean-sub")
	// All five reached the client's inflight store; either the node holds
	// three back or the client gets more.
	testutil.Eventually(t, waitFor, func() bool {
		return mc.State.Inflight.Len() == 5 && (n.flow.holding(mc) == 3 || len(cl.received()) > 2)
	}, "five messages for the client")
	testutil.Eventually(t, waitFor, func() bool { return len(cl.received()) >= 2 }, "two messages")
	if k := len(cl.received()); k != 2 {
		t.Fatalf("received %d of 5 QoS 1 messages with Receive Maximum 2 and no acknowledgement", k)
	}
	cl.ackAll(t, 5)
}

// TestReceiveMaximumExceeded: a client that sends more QoS 2 PUBLISHes
// without completing them than the CONNACK's Receive Maximum allows gets
// DISCONNECT 0x93 and an orderly close, not a TCP reset [MQTT-3.3.4-8],
// having had at most that many accepted. With replicated durability a
// publish being stored counts too: mochi counted it only once stored, and
// under load a client had 1,342 QoS 2 PUBLISHes accepted against a Receive
// Maximum of 1,024. (Those stored when the DISCONNECT goes out get no
// PUBREC: the client sends them again.)
func TestReceiveMaximumExceeded(t *testing.T) {
	c := shared(t)
	conn, ack := dialRawV5(t, c.addr(0), "rm-exceed")
	rm := int(ack.Properties.ReceiveMaximum)
	if rm == 0 {
		t.Fatal("CONNACK without Receive Maximum")
	}
	// A client that goes on sending: the node stops reading at rm+1.
	go func() {
		for i := 1; ; i++ {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, ProtocolVersion: 5,
				TopicName: "rm-exceed/t", PacketID: uint16(i%65535 + 1), Payload: make([]byte, 1000)}
			var buf bytes.Buffer
			if pk.PublishEncode(&buf) != nil {
				return
			}
			if _, err := conn.Write(buf.Bytes()); err != nil {
				return
			}
		}
	}()
	recs := 0
	for {
		pk, err := conn.next()
		if err != nil {
			t.Fatalf("after %d PUBRECs of %d: %v, want DISCONNECT 0x93", recs, rm, err)
		}
		if pk.FixedHeader.Type == packets.Pubrec {
			recs++
			continue
		}
		if pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrReceiveMaximum.Code {
			t.Fatalf("after %d PUBRECs: %v reason %#x, want DISCONNECT 0x93", recs, pk.FixedHeader.Type, pk.ReasonCode)
		}
		break
	}
	if recs > rm {
		t.Errorf("%d PUBRECs before the DISCONNECT, want at most %d", recs, rm)
	}
	if _, err := conn.next(); err != io.EOF {
		t.Errorf("after the DISCONNECT: %v, want an orderly close (EOF)", err)
	}
}

// TestServerKeepAlive: with mqtt.max_keep_alive set, a v5 client asking for
// a longer keep-alive, or none, is told the cap in its CONNACK (Server Keep
// Alive) and held to it; a shorter one is left alone [MQTT-3.2.2-21].
func TestServerKeepAlive(t *testing.T) {
	cfg := nodeConfig("keepalive", 0, t.TempDir())
	cfg.Mesh.Listen = ""
	cfg.MQTT.MaxKeepAlive = config.Duration(time.Second)
	n, err := startNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	addr := n.ListenerAddr("tcp")
	for _, tc := range []struct {
		asked uint16
		told  bool
	}{{60, true}, {0, true}, {1, false}} {
		conn, ack := dialRawV5(t, addr, fmt.Sprintf("ka-%d", tc.asked), func(pk *packets.Packet) { pk.Connect.Keepalive = tc.asked })
		if ack.ReasonCode != 0 {
			t.Fatalf("keep-alive %d: CONNACK %#x", tc.asked, ack.ReasonCode)
		}
		if got := ack.Properties.ServerKeepAliveFlag; got != tc.told || (got && ack.Properties.ServerKeepAlive != 1) {
			t.Errorf("keep-alive %d: Server Keep Alive %v %d, want %v 1", tc.asked, got, ack.Properties.ServerKeepAlive, tc.told)
		}
		if !tc.told {
			continue
		}
		// Held to it: silent for 1.5 times the cap, the client is dropped
		// (well before the read deadline of waitFor).
		start := time.Now()
		for {
			if _, err := conn.next(); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Errorf("keep-alive %d: still connected after %s", tc.asked, time.Since(start))
				}
				break
			}
		}
	}
}

// TestSubscribePacketIDIndependentOfDeliveries: a SUBSCRIBE or UNSUBSCRIBE
// may reuse the packet id of a QoS 1 delivery the client has not
// acknowledged yet: each side numbers its own packets [MQTT-2.2.1-3]. mochi
// answered 0x91 (packet identifier in use), and a client resubscribing on
// resume (mosquitto_sub) gave up.
func TestSubscribePacketIDIndependentOfDeliveries(t *testing.T) {
	c := shared(t)
	conn, _ := dialRawV5(t, c.addr(0), "pid-swap")
	subscribe := func(typ byte, pid uint16, filter string) packets.Packet {
		t.Helper()
		conn.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, PacketID: pid,
			Filters: packets.Subscriptions{{Filter: filter, Qos: 1}}})
		for {
			pk, err := conn.next()
			if err != nil {
				t.Fatal(err)
			}
			if pk.FixedHeader.Type == packets.Suback || pk.FixedHeader.Type == packets.Unsuback {
				return pk
			}
		}
	}
	subscribe(packets.Subscribe, 100, "pid-swap/a")
	pub := dialV5(t, c.addr(0), "pid-swap-pub", true, 0)
	pub.send(t, "pid-swap/a", 1, "x")
	var pid uint16
	for pid == 0 {
		pk, err := conn.next()
		if err != nil {
			t.Fatal(err)
		}
		if pk.FixedHeader.Type == packets.Publish {
			pid = pk.PacketID // not acknowledged: in flight
		}
	}
	for _, typ := range []byte{packets.Subscribe, packets.Unsubscribe} {
		ack := subscribe(typ, pid, "pid-swap/b")
		if ack.PacketID != pid || len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] >= 0x80 {
			t.Errorf("type %d with the id of a delivery in flight (%d): ack id %d, reasons %v", typ, pid, ack.PacketID, ack.ReasonCodes)
		}
	}
}

// TestReceiveMaximumOnResume: a v5 client resuming a session with more QoS
// 1 messages queued than its Receive Maximum gets that many, and the next
// one once it acknowledges one [MQTT-3.3.4-9]. mochi resent all of them on
// resumption, before the node's flow control could hold any back.
func TestReceiveMaximumOnResume(t *testing.T) {
	addr, n := memoryNode(t, "rm-resume")
	resume := resumeSession(2)
	sub, _ := dialRawV5(t, addr, "rm-resume", resume)
	sub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "rm-resume/t", Qos: 1}}})
	if pk, err := sub.next(); err != nil || pk.FixedHeader.Type != packets.Suback {
		t.Fatalf("SUBACK: %v %v", pk.FixedHeader, err)
	}
	sub.Close()
	testutil.Eventually(t, waitFor, func() bool {
		old, ok := n.broker.Clients.Get("rm-resume")
		return ok && old.Closed()
	}, "session offline")
	pub := dialV5(t, addr, "rm-resume-pub", true, 0)
	for _, p := range numbered("m", 0, 5) {
		pub.send(t, "rm-resume/t", 1, p)
	}
	testutil.Eventually(t, waitFor, func() bool { return cl0(n, "rm-resume").State.Inflight.Len() == 5 }, "five queued")

	sub, ack := dialRawV5(t, addr, "rm-resume", resume)
	if !ack.SessionPresent {
		t.Fatal("session not resumed")
	}
	sub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	var got []uint16 // what came before the PINGRESP: everything resent on resumption
	for {
		pk, err := sub.next()
		if err != nil {
			t.Fatal(err)
		}
		if pk.FixedHeader.Type == packets.Pingresp {
			break
		}
		if pk.FixedHeader.Type == packets.Publish {
			got = append(got, pk.PacketID)
		}
	}
	if len(got) != 2 {
		t.Fatalf("resumed with Receive Maximum 2: %d of 5 queued QoS 1 messages sent unacknowledged", len(got))
	}
	sub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: got[0]})
	if pk, err := sub.next(); err != nil || pk.FixedHeader.Type != packets.Publish {
		t.Fatalf("after a PUBACK: %v %v, want the third message", pk.FixedHeader, err)
	}
}

// TestDisconnectReasonCodesValid: a v5 DISCONNECT carries a reason code
// valid for DISCONNECT (MQTT 5 §3.14.2.1). mochi wrote the code of whatever
// ended the connection: 0x88 server unavailable, a CONNACK-only code, made
// paho-mqtt for Python 1.6 die in its network thread instead of reconnecting
// (a durability test subscriber was lost that way).
func TestDisconnectReasonCodesValid(t *testing.T) {
	n := soloNode(t, nil)
	for _, tc := range []struct {
		sent packets.Code
		want byte
	}{
		{packets.ErrServerUnavailable, packets.ErrServerBusy.Code},
		{packets.ErrPacketIdentifierInUse, packets.ErrProtocolViolation.Code},
		{packets.ErrBadUsernameOrPassword, packets.ErrUnspecifiedError.Code},
		{packets.ErrSessionTakenOver, packets.ErrSessionTakenOver.Code},
		{packets.ErrServerShuttingDown, packets.ErrServerShuttingDown.Code},
	} {
		id := fmt.Sprintf("disconnect-%x", tc.sent.Code)
		c, _ := dialRawV5(t, n.ListenerAddr("tcp"), id)
		var cl *mqtt.Client
		testutil.Eventually(t, waitFor, func() bool { cl = cl0(n, id); return cl != nil }, "%s not registered", id)
		_ = n.broker.DisconnectClient(cl, tc.sent)
		pk, err := c.next()
		if err != nil {
			t.Fatalf("%#x: %v", tc.sent.Code, err)
		}
		if pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != tc.want {
			t.Errorf("%#x sent as type %d reason %#x, want DISCONNECT %#x", tc.sent.Code, pk.FixedHeader.Type, pk.ReasonCode, tc.want)
		}
	}
}

// TestOwnPublishKeepsDelivery: a client's QoS 1/2 PUBLISH whose packet id
// equals that of a delivery in flight to it does not make the node forget
// the delivery: client and server number their packets independently
// [MQTT-2.2.1-3]. mochi keeps one inflight store for both directions and
// dropped the delivery, so a client that reconnected before acknowledging
// it never got it again (memory durability: lost).
func TestOwnPublishKeepsDelivery(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("QoS %d", qos), func(t *testing.T) { ownPublishKeepsDelivery(t, qos) })
	}
}

func ownPublishKeepsDelivery(t *testing.T, qos byte) {
	addr, n := memoryNode(t, fmt.Sprintf("pid-own%d", qos))
	resume := resumeSession(0)
	sub, _ := dialRawV5(t, addr, "pid-own", resume)
	sub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "pid-own/t", Qos: 1}}})
	if pk, err := sub.next(); err != nil || pk.FixedHeader.Type != packets.Suback {
		t.Fatalf("SUBACK: %v %v", pk.FixedHeader, err)
	}
	dialV5(t, addr, "pid-own-pub", true, 0).send(t, "pid-own/t", 1, "queued")
	in, err := sub.next()
	if err != nil || in.FixedHeader.Type != packets.Publish {
		t.Fatalf("delivery: %v %v", in.FixedHeader, err)
	}
	// Not acknowledged; the client publishes under the same packet id.
	sub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		PacketID: in.PacketID, TopicName: "pid-own/other", Payload: []byte("x")})
	want := []byte{packets.Puback}
	if qos == 2 {
		want = []byte{packets.Pubrec, packets.Pubcomp}
	}
	for _, typ := range want {
		ack, err := sub.next()
		if err != nil || ack.FixedHeader.Type != typ || ack.PacketID != in.PacketID || ack.ReasonCode >= 0x80 {
			t.Fatalf("want type %d id %d for the client's publish, got %v id %d reason %#x: %v", typ, in.PacketID, ack.FixedHeader.Type, ack.PacketID, ack.ReasonCode, err)
		}
		if typ == packets.Pubrec {
			sub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: in.PacketID})
		}
	}
	sub.Close()
	testutil.Eventually(t, waitFor, func() bool {
		old, ok := n.broker.Clients.Get("pid-own")
		return ok && old.Closed()
	}, "session offline")
	sub, resumed := dialRawV5(t, addr, "pid-own", resume)
	if !resumed.SessionPresent {
		t.Fatal("session not resumed")
	}
	sub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	for {
		pk, err := sub.next()
		if err != nil {
			t.Fatal(err)
		}
		if pk.FixedHeader.Type == packets.Pingresp {
			t.Fatal("the unacknowledged delivery was not sent again on resumption")
		}
		if pk.FixedHeader.Type == packets.Publish && pk.PacketID == in.PacketID && string(pk.Payload) == "queued" {
			if !pk.FixedHeader.Dup {
				t.Error("resent without DUP")
			}
			return
		}
	}
}

// memoryNode starts one node with sessions.durability memory and no mesh.
func memoryNode(t *testing.T, name string) (string, *Node) {
	t.Helper()
	c, err := startCluster(name, 1, func(cfg *config.Node) { cfg.Mesh.Listen, cfg.Sessions.Durability = "", "memory" })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	n := c.nodes[0]
	testutil.Eventually(t, waitFor, func() bool { return n.healthy() == nil }, "node ready")
	return c.addr(0), n
}

// resumeSession makes a raw v5 CONNECT resume its session (expiry 600 s),
// with Receive Maximum rm when not 0.
func resumeSession(rm uint16) func(*packets.Packet) {
	return func(pk *packets.Packet) {
		pk.Connect.Clean = false
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 600, true
		pk.Properties.ReceiveMaximum = rm
	}
}

// TestDelayedWillWaitsForReceiveMaximum: a delayed will that has to wait
// for a subscriber's Receive Maximum is still delivered, with no Message
// Expiry Interval of its own. mochi keeps the time the will was due in the
// message's expiry, so the node dropped it as expired (message_expired)
// and a will sent at once carried an expiry of 1 s.
func TestDelayedWillWaitsForReceiveMaximum(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	sub := dialManualAcks(t, addr, "dw-sub", 1, 0, "dw/#")
	free := dialV5(t, addr, "dw-free", true, 0) // takes the will at once
	free.sub(t, "dw/will", 1)
	pub := dialV5(t, addr, "dw-pub", true, 0)
	pub.send(t, "dw/first", 1, "first") // holds the subscriber's one slot
	testutil.Eventually(t, waitFor, func() bool { return len(sub.received()) == 1 }, "the first message")
	delay := uint32(1)
	dying := dialV5(t, addr, "dw-dying", true, 60, func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "dw/will", QoS: 1, Payload: []byte("will")}
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
	})
	dying.TerminateConnectionForTest()
	due := time.Now().Add(time.Duration(delay) * time.Second)
	// Past due, and past the second in which the node's queue would have
	// judged the will expired.
	testutil.Eventually(t, waitFor, func() bool { return time.Now().After(due.Add(3 * time.Second)) }, "past the will delay")
	sub.ackAll(t, 2)
	got := sub.received()
	if len(got) != 2 || got[1].Topic != "dw/will" {
		t.Fatalf("received %d messages, the second %+v; want the will", len(got), got[len(got)-1])
	}
	if e := got[1].Properties.MessageExpiry; e != nil {
		t.Errorf("the will carries Message Expiry Interval %d; it set none", *e)
	}
	if w := free.wait(t, 1)[0]; w.v5 == nil || w.v5.Properties.MessageExpiry != nil {
		t.Errorf("the will sent at once: %+v; want no Message Expiry Interval", w.v5)
	}
}

// TestDelayedWillKeepsItsExpiry: a delayed will with a Message Expiry
// Interval of its own keeps it on its way to a subscriber with a Receive
// Maximum, whose messages go through the node's queue (the outside check
// of the fix above found it cleared: "exp=" on the will's node, 99 on the
// other), and to one without.
func TestDelayedWillKeepsItsExpiry(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	// It also asks for no problem information (paho.golang's default),
	// which must not cost a PUBLISH its user properties [MQTT-3.1.2-29]:
	// mochi dropped them.
	limited := dialV5(t, addr, "dwe-limited", true, 0, func(cp *paho.Connect) {
		rm := uint16(20)
		cp.Properties = &paho.ConnectProperties{ReceiveMaximum: &rm, RequestProblemInfo: false}
	})
	limited.sub(t, "dwe/#", 1)
	plain := dialV5(t, addr, "dwe-plain", true, 0)
	plain.sub(t, "dwe/#", 1)
	const expiry = 300
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5, Mods: packets.Mods{AllowResponseInfo: true},
		Properties: packets.Properties{SessionExpiryInterval: 60, SessionExpiryIntervalFlag: true},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "dwe-dying", Clean: true, Keepalive: 30,
			WillFlag: true, WillQos: 1, WillTopic: "dwe/will", WillPayload: []byte("bye"),
			WillProperties: packets.Properties{ContentType: "text/plain", ResponseTopic: "wp-reply", CorrelationData: []byte{0, 1, 2},
				PayloadFormat: 1, PayloadFormatFlag: true, MessageExpiryInterval: expiry, WillDelayInterval: 1,
				User: []packets.UserProperty{{Key: "a", Val: "b"}}}}}
	var buf bytes.Buffer
	if err := connect.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	conn := rawDial(t, addr)
	write(t, conn, buf.Bytes())
	if code := readConnack(t, conn, 5); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	conn.Close()
	checkWillProps(t, []*v5{limited, plain}, expiry)
}

// TestWillAtSessionEndAcrossNodes: a will whose delay is longer than its
// session's expiry is due when the session ends [MQTT-3.1.3-9]; it reaches
// subscribers on every node, and a retained one is kept on every node.
// mochi published it only to the node's own subscribers: it drops the
// client when the session expires, then skips OnWillSent and the retain.
func TestWillAtSessionEndAcrossNodes(t *testing.T) {
	c := shared(t)
	sub := dialV5(t, c.addr(1), "se-sub", true, 0)
	sub.sub(t, "se-will/#", 1)
	delay := uint32(30)
	dying := dialV5(t, c.addr(0), "se-dying", true, 1, func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "se-will/w", QoS: 1, Retain: true, Payload: []byte("gone")}
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
	})
	dying.TerminateConnectionForTest() // the session ends a second later, the will with it
	sub.waitPayload(t, "gone")
	later := dialV5(t, c.addr(1), "se-later", true, 0)
	later.sub(t, "se-will/w", 1)
	if got := later.wait(t, 1)[0]; got.payload != "gone" || !got.retain {
		t.Errorf("a subscriber on another node after the will: %+v; want the retained will", got)
	}
	cl := dialV5(t, c.addr(0), "se-clear", true, 0)
	cl.pub(t, &paho.Publish{Topic: "se-will/w", QoS: 1, Retain: true}) // clears it for other tests
}

// TestWillProperties: a will's Content Type, Correlation Data, Response
// Topic, Payload Format Indicator and Message Expiry Interval reach its
// subscribers, on its node and on others, with its user properties as the
// client sent them. mochi kept only the user properties.
func TestWillProperties(t *testing.T) {
	c := shared(t)
	var subs []*v5
	for i := range 2 {
		s := dialV5(t, c.addr(i), fmt.Sprintf("wp-sub%d", i), true, 0)
		s.sub(t, "wp-will/#", 1)
		subs = append(subs, s)
	}
	// paho.golang writes a will's properties as a CONNECT's, leaving out
	// all but the user properties: the CONNECT is mochi's encoding.
	const expiry = 300
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5, Mods: packets.Mods{AllowResponseInfo: true},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "wp-dying", Clean: true, Keepalive: 30,
			WillFlag: true, WillQos: 1, WillTopic: "wp-will/w", WillPayload: []byte("bye"),
			WillProperties: packets.Properties{ContentType: "text/plain", ResponseTopic: "wp-reply", CorrelationData: []byte{0, 1, 2},
				PayloadFormat: 1, PayloadFormatFlag: true, MessageExpiryInterval: expiry, User: []packets.UserProperty{{Key: "a", Val: "b"}}}}}
	var buf bytes.Buffer
	if err := connect.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	conn := rawDial(t, c.addr(0))
	write(t, conn, buf.Bytes())
	if code := readConnack(t, conn, 5); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	conn.Close() // no DISCONNECT: the will goes out
	checkWillProps(t, subs, expiry)
}

// checkWillProps checks that each subscriber got TestWillProperties' will
// with every property, its expiry counted down from expiry.
func checkWillProps(t *testing.T, subs []*v5, expiry uint32) {
	t.Helper()
	for i, s := range subs {
		m := s.wait(t, 1)[0].v5
		p := m.Properties
		if p == nil || p.ContentType != "text/plain" || p.ResponseTopic != "wp-reply" || !bytes.Equal(p.CorrelationData, []byte{0, 1, 2}) ||
			p.PayloadFormat == nil || *p.PayloadFormat != 1 || p.MessageExpiry == nil || *p.MessageExpiry > expiry || *p.MessageExpiry < expiry-30 ||
			len(p.User) != 1 || p.User[0] != (paho.UserProperty{Key: "a", Value: "b"}) {
			t.Errorf("will on node %d: %+v", i, p)
		}
	}
}

// TestUserPropertiesWithoutProblemInfo: a subscriber that asks for no
// problem information (Request Problem Information 0, paho.golang's
// default) still gets a PUBLISH's user properties [MQTT-3.1.2-29]; mochi
// left them out.
func TestUserPropertiesWithoutProblemInfo(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	sub := dialV5(t, addr, "upi-sub", true, 0, func(cp *paho.Connect) {
		cp.Properties = &paho.ConnectProperties{RequestProblemInfo: false}
	})
	sub.sub(t, "upi/t", 1)
	pub := dialV5(t, addr, "upi-pub", true, 0)
	pub.pub(t, &paho.Publish{Topic: "upi/t", QoS: 1, Payload: []byte("x"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}}})
	if m := sub.wait(t, 1)[0].v5; m == nil || m.Properties == nil || len(m.Properties.User) != 1 || m.Properties.User[0].Key != "k" {
		t.Errorf("received %+v; want user property k=v", m)
	}
}
