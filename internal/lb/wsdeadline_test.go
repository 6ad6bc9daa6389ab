package lb

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestWebSocketStalledAfterUpgradeIsClosed: connect_timeout covers the
// whole CONNECT on a WebSocket listener too. A client that completes the
// upgrade and then sends nothing, and one that sends half a CONNECT, are
// both closed at connect_timeout (the WebSocket library clears the socket
// deadline during the upgrade).
func TestWebSocketStalledAfterUpgradeIsClosed(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1,
		listeners: "  - { name: ws, address: \"127.0.0.1:0\", upstream: brokers, websocket: {} }\n",
		top:       "limits: { connect_timeout: 1s }\n"})
	connect := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: "stalled", CleanStart: true, KeepAlive: 30})
	for name, send := range map[string][]byte{"silent": nil, "half CONNECT": connect[:len(connect)/2]} {
		t.Run(name, func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
			ws, _, err := d.Dial("ws://"+h.lb.ListenerAddr("ws")+"/mqtt", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			if send != nil {
				if err := ws.WriteMessage(websocket.BinaryMessage, send); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			ws.SetReadDeadline(time.Now().Add(6 * time.Second))
			_, _, err = ws.ReadMessage()
			var ne net.Error
			if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("after %v: %v; want the LB to close the connection at connect_timeout (1s)", time.Since(start), err)
			}
		})
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Count(h.accessLog(), "result=timeout") >= 2 },
		"two timeouts in the access log:\n%s", h.accessLog())
}
