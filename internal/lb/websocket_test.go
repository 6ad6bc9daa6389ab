package lb

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// wsClient connects paho.mqtt.golang over its own ws/wss transport (it
// writes each packet whole; paho.golang's net.Buffers writes interleave on
// any net.Conn that is not a TCP socket).
func wsClient(t *testing.T, url, id string, tlsCfg *tls.Config, got chan<- string) mqtt3.Client {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker(url).SetClientID(id).SetTLSConfig(tlsCfg).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { got <- string(m.Payload()) })
	c := mqtt3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

// TestWebSocketListeners: MQTT over ws and wss through the LB to a plain
// TCP broker, a round trip each; a wrong path is refused with 404.
func TestWebSocketListeners(t *testing.T) {
	ca := testutil.NewCA(t)
	cert := ca.Server("lb")
	h := newHarness(t, harnessOpts{brokers: 1, listeners: "  - { name: ws, address: \"127.0.0.1:0\", upstream: brokers, websocket: {} }\n" +
		fmt.Sprintf("  - { name: wss, address: \"127.0.0.1:0\", upstream: brokers, websocket: { path: /mqtt }, tls: { cert: %q, key: %q } }\n", cert.CertFile, cert.KeyFile)})
	for _, tc := range []struct {
		url, id string
		tls     *tls.Config
	}{
		{"ws://" + h.lb.ListenerAddr("ws") + "/mqtt", "ws-plain", nil},
		{"wss://" + h.lb.ListenerAddr("wss") + "/mqtt", "ws-secure", &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}},
	} {
		got := make(chan string, 1)
		c := wsClient(t, tc.url, tc.id, tc.tls, got)
		if tok := c.Subscribe("ws/"+tc.id, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: subscribe: %v", tc.url, tok.Error())
		}
		if tok := c.Publish("ws/"+tc.id, 1, false, "over "+tc.id); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: publish: %v", tc.url, tok.Error())
		}
		select {
		case m := <-got:
			if m != "over "+tc.id {
				t.Errorf("got %q", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no message back", tc.url)
		}
		if !h.brokers[0].HasClient(tc.id) {
			t.Errorf("%s not on the broker", tc.id)
		}
	}
	resp, err := http.Get("http://" + h.lb.ListenerAddr("ws") + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("wrong path: %d, want 404", resp.StatusCode)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(h.accessLog(), "result=ws_error") },
		"access log has ws_error")
}

// TestWebSocketWrongSubprotocolRefused: a WebSocket client asking only for
// subprotocols that are not MQTT's is refused [MQTT-6.0.0-3]; one offering
// mqtt among others is served.
func TestWebSocketWrongSubprotocolRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, listeners: "  - { name: ws, address: \"127.0.0.1:0\", upstream: brokers, websocket: {} }\n"})
	url := "ws://" + h.lb.ListenerAddr("ws") + "/mqtt"
	d := websocket.Dialer{Subprotocols: []string{"graphql-ws", "chat"}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(url, nil)
	if err == nil {
		ws.Close()
		t.Fatalf("upgrade for subprotocols %v accepted (%q)", d.Subprotocols, ws.Subprotocol())
	}
	if resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("refusal: %v, %v; want 400", resp, err)
	}
	d.Subprotocols = []string{"chat", "mqtt"}
	ws, _, err = d.Dial(url, nil)
	if err != nil {
		t.Fatalf("offering mqtt among others: %v", err)
	}
	defer ws.Close()
	if ws.Subprotocol() != "mqtt" {
		t.Errorf("selected %q, want mqtt [MQTT-6.0.0-4]", ws.Subprotocol())
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(h.accessLog(), "no MQTT subprotocol") },
		"access log has the refusal:\n%s", h.accessLog())
}

// TestWebSocketClientCloseLogged: a WebSocket client that ends with a close
// frame closed its side, as a TCP client's FIN does: the access log says
// client_closed.
func TestWebSocketClientCloseLogged(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, listeners: "  - { name: ws, address: \"127.0.0.1:0\", upstream: brokers, websocket: {} }\n"})
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("ws://"+h.lb.ListenerAddr("ws")+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	connect := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: "ws-closer", CleanStart: true, KeepAlive: 30})
	if err := ws.WriteMessage(websocket.BinaryMessage, connect); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, m, err := ws.ReadMessage(); err != nil || len(m) < 4 || m[0] != 0x20 || m[3] != 0 {
		t.Fatalf("CONNACK: % x, %v", m, err)
	}
	ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	ws.ReadMessage() // the LB's close frame, or the end
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(h.accessLog(), `client_id="ws-closer"`) },
		"no access log record:\n%s", h.accessLog())
	if l := grepLines(h.accessLog(), `client_id="ws-closer"`); !strings.Contains(l, `reason="client_closed"`) {
		t.Errorf("a client's close frame logged as:\n%s", l)
	}
}
