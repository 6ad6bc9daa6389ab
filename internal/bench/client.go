package bench

import (
	"context"
	"net"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// client is one MQTT client of a pub/sub run. publish hands one message to
// the client, blocking while the flow-control window is full; flush waits
// until what was published has been acknowledged (QoS 1 and 2).
type client interface {
	subscribe(ctx context.Context, filter string, qos byte) error
	publish(ctx context.Context, topic string, qos byte, payload []byte) error
	flush(ctx context.Context) error
	disconnect()
}

// Client implementations of pub/sub runs.
const (
	ClientLite = "lite" // the bench's own buffered client (lite.go)
	ClientPaho = "paho" // paho.mqtt.golang (3.1.1) or paho.golang (5.0)
)

// sessionExpiry is the v5 session expiry of persistent subscribers.
var sessionExpiry uint32 = 300

// clientConfig is what connectClient needs.
type clientConfig struct {
	kind    string // ClientLite or ClientPaho
	target  *Target
	id      string
	timeout time.Duration
	// inflight bounds unacknowledged QoS 1/2 publishes (MQTT 3.1.1; in 5.0
	// the server's Receive Maximum does).
	inflight int
	// persistent: a session that outlives the connection (3.1.1 clean
	// session 0, 5.0 session expiry 300 s), for subscribers.
	persistent bool
	// onMessage gets each received payload, in order, on the client's
	// delivery goroutine. Nil for publishers.
	onMessage func(payload []byte)
	// onLost is told when the connection ends other than by disconnect.
	onLost func(error)
	// onAckError is told when a QoS 1/2 publish was not acknowledged.
	onAckError func(error)
}

// connectClient connects with the light client, or with paho.golang for
// MQTT 5.0 and paho.mqtt.golang for 3.1.1.
func connectClient(ctx context.Context, cc clientConfig) (client, error) {
	var c client
	var err error
	switch {
	case cc.kind != ClientPaho:
		c, err = connectLite(ctx, cc)
	case cc.target.Version == mqttwire.V5:
		c, err = connect5(ctx, cc)
	default:
		c, err = connect3(ctx, cc)
	}
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

// dial connects to the target for a client library.
func (cc *clientConfig) dial(ctx context.Context) (net.Conn, error) {
	return cc.target.dial(ctx, &net.Dialer{}, time.Now().Add(cc.timeout))
}
