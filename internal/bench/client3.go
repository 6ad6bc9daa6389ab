package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// client3 is an MQTT 3.1.1 client (paho.mqtt.golang). QoS 1/2 publishes are
// bounded by a window of tokens: publishing message i first waits for the
// acknowledgement of message i-inflight.
type client3 struct {
	c       mqtt.Client
	cc      clientConfig
	window  []mqtt.Token
	next    int
	timeout time.Duration
}

var _ client = (*client3)(nil)

func connect3(ctx context.Context, cc clientConfig) (*client3, error) {
	o := mqtt.NewClientOptions().
		AddBroker("tcp://" + cc.target.Addr). // the dial below replaces the library's
		SetClientID(cc.id).
		SetProtocolVersion(4).
		SetCleanSession(!cc.persistent).
		SetAutoReconnect(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(cc.timeout).
		SetOrderMatters(true).
		SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) { return cc.dial(ctx) })
	if cc.target.Username != "" {
		o.SetUsername(cc.target.Username).SetPassword(cc.target.Password)
	}
	if cc.onLost != nil {
		o.SetConnectionLostHandler(func(_ mqtt.Client, err error) { cc.onLost(err) })
	}
	c := &client3{c: mqtt.NewClient(o), cc: cc, window: make([]mqtt.Token, max(cc.inflight, 1)), timeout: cc.timeout}
	if err := wait(ctx, c.c.Connect(), cc.timeout); err != nil {
		return nil, fmt.Errorf("connect %s: %w", cc.id, err)
	}
	return c, nil
}

func (c *client3) subscribe(ctx context.Context, filter string, qos byte) error {
	t := c.c.Subscribe(filter, qos, func(_ mqtt.Client, m mqtt.Message) { c.cc.onMessage(m.Payload()) })
	if err := wait(ctx, t, c.timeout); err != nil {
		return fmt.Errorf("subscribe %s %q: %w", c.cc.id, filter, err)
	}
	if granted := t.(*mqtt.SubscribeToken).Result()[filter]; granted >= 0x80 {
		return fmt.Errorf("subscribe %s %q: refused (0x%02x)", c.cc.id, filter, granted)
	}
	return nil
}

func (c *client3) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	if qos == 0 {
		t := c.c.Publish(topic, 0, false, payload)
		select { // written or refused already; otherwise it is queued in order
		case <-t.Done():
			return t.Error()
		default:
			return nil
		}
	}
	slot := &c.window[c.next]
	c.next = (c.next + 1) % len(c.window)
	if *slot != nil {
		if err := wait(ctx, *slot, c.timeout); err != nil && c.cc.onAckError != nil {
			c.cc.onAckError(err)
		}
	}
	*slot = c.c.Publish(topic, qos, false, payload)
	select {
	case <-(*slot).Done():
		if err := (*slot).Error(); err != nil {
			*slot = nil
			return err
		}
	default:
	}
	return nil
}

func (c *client3) flush(ctx context.Context) error {
	var errs []error
	for i, t := range c.window {
		if t == nil {
			continue
		}
		if err := wait(ctx, t, c.timeout); err != nil {
			errs = append(errs, err)
			if c.cc.onAckError != nil {
				c.cc.onAckError(err)
			}
		}
		c.window[i] = nil
	}
	return errors.Join(errs...)
}

func (c *client3) disconnect() { c.c.Disconnect(100) }

// wait waits for a token until timeout or ctx ends.
func wait(ctx context.Context, t mqtt.Token, timeout time.Duration) error {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-tm.C:
		return fmt.Errorf("no acknowledgement within %v: %w", timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		return ctx.Err()
	}
}
