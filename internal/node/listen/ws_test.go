package listen

import (
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/mqlb/mqlb/internal/testutil"
)

// wsClient connects an autopaho client to rawURL and returns it with the
// channel of messages it receives.
func wsClient(t *testing.T, rawURL, id string, tlsCfg *tls.Config, ws *autopaho.WebSocketConfig) (*autopaho.ConnectionManager, chan *paho.Publish) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *paho.Publish, 16)
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        tlsCfg,
		WebSocketCfg:                  ws,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                5 * time.Second,
		ReconnectBackoff:              func(int) time.Duration { return 50 * time.Millisecond },
		ClientConfig: paho.ClientConfig{
			ClientID: id,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) { msgs <- pr.Packet; return true, nil },
			},
		},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		_ = cm.Disconnect(dctx)
		cancel()
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := cm.AwaitConnection(wctx); err != nil {
		t.Fatalf("websocket connect %s: %v", rawURL, err)
	}
	return cm, msgs
}

// pubSubRoundTrip subscribes, publishes and waits for the message to return.
func pubSubRoundTrip(t *testing.T, cm *autopaho.ConnectionManager, msgs chan *paho.Publish, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("over websocket")}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	select {
	case m := <-msgs:
		if m.Topic != topic || string(m.Payload) != "over websocket" {
			t.Errorf("got %q %q", m.Topic, m.Payload)
		}
	case <-ctx.Done():
		t.Fatal("published message did not come back")
	}
}

func TestWebSocketPubSub(t *testing.T) {
	ts := startServer(t, Options{ID: "ws", Type: TypeWS})
	cm, msgs := wsClient(t, "ws://"+ts.addr["ws"]+DefaultPath, "ws-1", nil, nil)
	pubSubRoundTrip(t, cm, msgs, "ws/echo")
	got := ts.rec.wait(t, "ws-1")
	if got.Listener != "ws" {
		t.Errorf("listener %q, want ws", got.Listener)
	}
	if host, _, _ := net.SplitHostPort(got.Remote); host != "127.0.0.1" {
		t.Errorf("remote %q, want the client's loopback address", got.Remote)
	}
}

func TestWebSocketWrongPathRefused(t *testing.T) {
	ts := startServer(t, Options{ID: "ws", Type: TypeWS, Path: "/mqtt"})
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	_, resp, err := d.Dial("ws://"+ts.addr["ws"]+"/other", nil)
	if err == nil {
		t.Fatal("upgrade on the wrong path succeeded")
	}
	if resp == nil || resp.StatusCode != 404 {
		t.Errorf("response %v, want 404", resp)
	}
}

// TestWebSocketOtherSubprotocolRefused: a client offering only
// subprotocols other than mqtt is refused [MQTT-6.0.0-3].
func TestWebSocketOtherSubprotocolRefused(t *testing.T) {
	ts := startServer(t, Options{ID: "ws", Type: TypeWS, Path: "/mqtt"})
	d := websocket.Dialer{Subprotocols: []string{"wamp"}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial("ws://"+ts.addr["ws"]+"/mqtt", nil)
	if err == nil {
		ws.Close()
		t.Fatal("upgrade for subprotocol wamp succeeded")
	}
	if resp == nil || resp.StatusCode != 400 {
		t.Errorf("response %v, want 400", resp)
	}
}

func TestSecureWebSocketBehindProxyWithClientCert(t *testing.T) {
	ca := testutil.NewCA(t)
	ts := startServer(t, Options{ID: "wss", Type: TypeWSS, TLS: ca.ServerConfig(t, tls.RequireAndVerifyClientCert),
		ProxyProtocol: true, Trusted: loopback, UsernameFromCert: true})
	proxied := &autopaho.WebSocketConfig{Dialer: func(_ *url.URL, tlsCfg *tls.Config) *websocket.Dialer {
		return &websocket.Dialer{
			Subprotocols:     []string{"mqtt"},
			TLSClientConfig:  tlsCfg,
			HandshakeTimeout: 5 * time.Second,
			NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				if _, err := headerFrom(1, "203.0.113.7:4242").WriteTo(c); err != nil {
					c.Close()
					return nil, err
				}
				return c, nil
			},
		}
	}}
	cm, msgs := wsClient(t, "wss://"+ts.addr["wss"]+DefaultPath, "wss-1", ca.ClientConfig(t, "browser-3"), proxied)
	pubSubRoundTrip(t, cm, msgs, "wss/echo")
	got := ts.rec.wait(t, "wss-1")
	if got.Username != "browser-3" || got.Remote != "203.0.113.7:4242" {
		t.Errorf("username %q remote %q; want browser-3 from 203.0.113.7:4242", got.Username, got.Remote)
	}
}
