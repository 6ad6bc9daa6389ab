package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	mqtt3packets "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/testutil"
)

const waitFor = 10 * time.Second

// inbox collects what a test client receives.
type inbox struct {
	mu   sync.Mutex
	msgs []received
}

type received struct {
	topic   string
	payload string
	qos     byte
	retain  bool
	v5      *paho.Publish // the whole v5 packet (nil for 3.1.1)
}

func (b *inbox) add(r received) {
	b.mu.Lock()
	b.msgs = append(b.msgs, r)
	b.mu.Unlock()
}

func (b *inbox) all() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

func (b *inbox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

// wait returns once n messages arrived (failing the test otherwise).
func (b *inbox) wait(t testing.TB, n int) []received {
	t.Helper()
	testutil.Eventually(t, waitFor, func() bool { return b.count() >= n }, "want %d messages, have %d", n, b.count())
	return b.all()
}

// waitPayload returns once a message with this payload arrived.
func (b *inbox) waitPayload(t testing.TB, payload string) {
	t.Helper()
	testutil.Eventually(t, waitFor, func() bool {
		for _, m := range b.all() {
			if m.payload == payload {
				return true
			}
		}
		return false
	}, "message %q not received", payload)
}

// v5 is an MQTT 5 test client (paho.golang).
type v5 struct {
	*paho.Client
	inbox
	connack    *paho.Connack
	disconnect chan *paho.Disconnect
}

// dialV5 connects a v5 client; expiry > 0 makes the session persistent.
// A CONNACK 0x88 server unavailable (a persistent session the node could
// not look up while the store recovers) is tried again, as a client would,
// until waitFor.
func dialV5(t testing.TB, addr, id string, cleanStart bool, expiry uint32, opts ...func(*paho.Connect)) *v5 {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		c, err := tryV5(addr, id, cleanStart, expiry, opts...)
		var refused *connackError
		if errors.As(err, &refused) && refused.code == packets.ErrServerUnavailable.Code && time.Now().Before(deadline) {
			t.Logf("v5 connect %s to %s refused (%v): connecting again", id, addr, err)
			time.Sleep(100 * time.Millisecond) // a client's back-off, not synchronisation
			continue
		}
		if err != nil {
			t.Fatalf("v5 connect %s to %s: %v", id, addr, err)
		}
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
		return c
	}
}

// connackError is a CONNACK with a failure reason code.
type connackError struct {
	code   byte
	reason string // its Reason String
}

func (e *connackError) Error() string {
	return fmt.Sprintf("CONNACK %#02x %q", e.code, e.reason)
}

func tryV5(addr, id string, cleanStart bool, expiry uint32, opts ...func(*paho.Connect)) (*v5, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	c := &v5{disconnect: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			c.add(received{topic: p.Topic, payload: string(p.Payload), qos: p.QoS, retain: p.Retain, v5: p})
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.disconnect <- d },
		OnClientError:      func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cp := &paho.Connect{ClientID: id, CleanStart: cleanStart, KeepAlive: 30}
	if expiry > 0 {
		// RequestProblemInfo as the spec's default: paho.golang sends
		// false as 0, which keeps reason strings off every packet.
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry, RequestProblemInfo: true}
	}
	for _, o := range opts {
		o(cp)
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		if ca != nil && ca.ReasonCode >= 0x80 {
			err = &connackError{code: ca.ReasonCode}
			if ca.Properties != nil {
				err.(*connackError).reason = ca.Properties.ReasonString
			}
		}
		return nil, err
	}
	c.connack = ca
	return c, nil
}

func (c *v5) sub(t testing.TB, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] != qos {
		t.Fatalf("subscribe %s: reasons %v, want granted QoS %d", filter, sa.Reasons, qos)
	}
}

// pub publishes p and waits for its acknowledgement. A QoS 1/2 publish the
// session queue did not store in time (a store stall under a loaded test
// run: PUBACK 0x80 "not stored ...") is sent again, as a client would, up to
// twice.
func (c *v5) pub(t testing.TB, p *paho.Publish) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for try := 1; ; try++ {
		resp, err := c.Publish(ctx, p)
		if err != nil && try < 3 && resp != nil && strings.HasPrefix(resp.Properties.ReasonString, "not stored") {
			t.Logf("publish %s refused (%s): sending it again", p.Topic, resp.Properties.ReasonString)
			continue
		}
		if err != nil {
			t.Fatalf("publish %s: %v", p.Topic, err)
		}
		return
	}
}

func (c *v5) send(t testing.TB, topic string, qos byte, payload string) {
	t.Helper()
	c.pub(t, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
}

// v3 is an MQTT 3.1.1 test client (paho.mqtt.golang).
type v3 struct {
	mqtt3.Client
	inbox
	sessionPresent bool
}

// dialV3 connects a 3.1.1 client (its options changed by opts). A CONNACK
// 0x03 server unavailable (see dialV5) is tried again until waitFor.
func dialV3(t testing.TB, addr, id string, clean bool, opts ...func(*mqtt3.ClientOptions)) *v3 {
	t.Helper()
	c := &v3{}
	co := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetCleanSession(clean).SetProtocolVersion(4).SetAutoReconnect(false).
		SetConnectRetry(false).SetOrderMatters(true).SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
			c.add(received{topic: m.Topic(), payload: string(m.Payload()), qos: m.Qos(), retain: m.Retained()})
		})
	for _, o := range opts {
		o(co)
	}
	deadline := time.Now().Add(waitFor)
	var tok mqtt3.Token
	for {
		c.Client = mqtt3.NewClient(co)
		tok = c.Connect()
		if !tok.WaitTimeout(waitFor) {
			t.Fatalf("3.1.1 connect %s to %s: no CONNACK in %v", id, addr, waitFor)
		}
		if code := tok.(*mqtt3.ConnectToken).ReturnCode(); code == mqtt3packets.ErrRefusedServerUnavailable && time.Now().Before(deadline) {
			t.Logf("3.1.1 connect %s to %s refused (%v): connecting again", id, addr, tok.Error())
			time.Sleep(100 * time.Millisecond) // a client's back-off, not synchronisation
			continue
		}
		if tok.Error() != nil {
			t.Fatalf("3.1.1 connect %s to %s: %v", id, addr, tok.Error())
		}
		break
	}
	c.sessionPresent = tok.(*mqtt3.ConnectToken).SessionPresent()
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func (c *v3) sub(t testing.TB, filter string, qos byte) {
	t.Helper()
	tok := c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
}

func (c *v3) send(t testing.TB, topic string, qos byte, retain bool, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, retain, payload)
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// waitN waits until b and other together hold n messages.
func (b *inbox) waitN(t testing.TB, other *inbox, n int) {
	t.Helper()
	testutil.Eventually(t, waitFor, func() bool { return b.count()+other.count() >= n },
		"want %d messages, have %d + %d", n, b.count(), other.count())
}
