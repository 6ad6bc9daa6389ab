package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// client5 is an MQTT 5.0 client (paho.golang). QoS 1/2 publishes are sent
// without waiting for their acknowledgement; the library blocks a publish
// while the server's Receive Maximum of them is unacknowledged.
type client5 struct {
	c  *paho.Client
	cc clientConfig
}

var _ client = (*client5)(nil)

func connect5(ctx context.Context, cc clientConfig) (*client5, error) {
	conn, err := cc.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", cc.id, err)
	}
	if _, ok := conn.(*tls.Conn); ok {
		conn = packets.NewThreadSafeConn(conn) // paho writes from several goroutines
	}
	cfg := paho.ClientConfig{ClientID: cc.id, Conn: conn, PacketTimeout: cc.timeout}
	if cc.onLost != nil {
		cfg.OnClientError = cc.onLost
		cfg.OnServerDisconnect = func(d *paho.Disconnect) {
			cc.onLost(fmt.Errorf("server sent DISCONNECT 0x%02x", d.ReasonCode))
		}
	}
	if cc.onMessage != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { cc.onMessage(pr.Packet.Payload); return true, nil },
		}
	}
	c := &client5{c: paho.NewClient(cfg), cc: cc}
	cp := &paho.Connect{ClientID: cc.id, CleanStart: true, KeepAlive: 30}
	if cc.persistent {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &sessionExpiry}
	}
	if cc.target.Username != "" {
		cp.Username, cp.UsernameFlag = cc.target.Username, true
		cp.Password, cp.PasswordFlag = []byte(cc.target.Password), cc.target.Password != ""
	}
	cctx, cancel := context.WithTimeout(ctx, cc.timeout)
	defer cancel()
	ca, err := c.c.Connect(cctx, cp)
	if err != nil {
		conn.Close()
		if ca != nil && ca.ReasonCode >= 0x80 {
			err = &refusedError{code: ca.ReasonCode, version: 5}
		}
		return nil, fmt.Errorf("connect %s: %w", cc.id, err)
	}
	return c, nil
}

func (c *client5) subscribe(ctx context.Context, filter string, qos byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.cc.timeout)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		return fmt.Errorf("subscribe %s %q: %w", c.cc.id, filter, err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		return fmt.Errorf("subscribe %s %q: refused (%v)", c.cc.id, filter, sa.Reasons)
	}
	return nil
}

func (c *client5) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	_, err := c.c.PublishWithOptions(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload},
		paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
	return err
}

// flush has nothing to wait on: paho.golang reports no outcome of an
// asynchronous publish. The run's drain waits for the deliveries instead.
func (c *client5) flush(context.Context) error { return nil }

func (c *client5) disconnect() {
	_ = c.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	select {
	case <-c.c.Done():
	case <-time.After(time.Second):
	}
}
