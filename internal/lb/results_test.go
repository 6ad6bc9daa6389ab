package lb

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/testutil"
)

// denyHook refuses (not authorized) client ids starting with "deny-".
type denyHook struct{ mqtt.HookBase }

func (denyHook) ID() string { return "deny" }
func (denyHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (denyHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return !strings.HasPrefix(cl.ID, "deny-")
}
func (denyHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// metricsText returns the admin's /metrics page.
func metricsText(t *testing.T, h *harness) string {
	t.Helper()
	resp, err := http.Get("http://" + h.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestBrokerRefusalIsNotOK: a broker's refusal (CONNACK 0x05) reaches the
// client and is recorded as refused_by_server with its code, not as ok; a
// connection that never got a CONNACK has no connack field at all.
func TestBrokerRefusalIsNotOK(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, brokerOpt: []testutil.BrokerOption{testutil.WithAuthHook(&denyHook{})}})
	if got := rawConnect(t, h.addr, 4, "deny-me"); string(got) != "\x20\x02\x00\x05" {
		t.Fatalf("client got % x, want the broker's 20 02 00 05", got)
	}
	if c, err := net.Dial("tcp", h.addr); err == nil { // not MQTT: closed without an answer
		c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.ReadAll(c)
		c.Close()
	}
	var line, garbage string
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, l := range strings.Split(h.accessLog(), "\n") {
			if strings.Contains(l, `client_id="deny-me"`) {
				line = l
			}
			if strings.Contains(l, "result=not_mqtt") {
				garbage = l
			}
		}
		return line != "" && garbage != ""
	}, "access log lines:\n%s", h.accessLog())
	if !strings.Contains(line, "result=refused_by_server") || !strings.Contains(line, "connack=5 ") {
		t.Errorf("refused client logged as\n%s\nwant result=refused_by_server connack=5", line)
	}
	if strings.Contains(garbage, "connack=") {
		t.Errorf("a connection without CONNACK logged as\n%s\nwant no connack field", garbage)
	}
	m := metricsText(t, h)
	if !strings.Contains(m, `mqlb_connections_total{listener="mqtt",result="refused_by_server"} 1`) ||
		strings.Contains(m, `mqlb_connections_total{listener="mqtt",result="ok"}`) {
		t.Errorf("metrics:\n%s", grepLines(m, "mqlb_connections_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
