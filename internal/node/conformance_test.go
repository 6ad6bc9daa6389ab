package node

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

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

// TestDelayedWillOfMovedSession: a session that moved to another node before
// its will delay ended must not have its will published [MQTT-3.1.3-9],
// neither on the node it left nor anywhere else.
func TestDelayedWillOfMovedSession(t *testing.T) {
	c := shared(t)
	subs := []*v5{dialV5(t, c.addr(0), "moved-will-sub0", true, 0), dialV5(t, c.addr(2), "moved-will-sub2", true, 0)}
	for _, s := range subs {
		s.sub(t, "moved-will/+", 1)
	}
	delay := uint32(1)
	dying := dialV5(t, c.addr(0), "moved-will", true, 60, func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "moved-will/w", QoS: 1, Payload: []byte("will")}
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
	})
	dying.TerminateConnectionForTest() // the will is due in a second
	due := time.Now().Add(time.Duration(delay) * time.Second)
	back := dialV5(t, c.addr(1), "moved-will", false, 60) // the session moves before that
	if !back.connack.SessionPresent {
		t.Fatal("session present = 0")
	}
	// mochi's timer looks at delayed wills once a second: two seconds past due
	// it would have fired.
	testutil.Eventually(t, waitFor, func() bool { return time.Now().After(due.Add(2 * time.Second)) }, "past the will delay")
	pub := dialV5(t, c.addr(1), "moved-will-pub", true, 0)
	pub.send(t, "moved-will/fence", 1, "fence")
	for i, s := range subs {
		s.waitPayload(t, "fence")
		if got := payloadsOn(s.all(), "moved-will/w"); len(got) > 0 {
			t.Errorf("subscriber on node %d got the will of a session that moved: %q", []int{0, 2}[i], got)
		}
	}
}
