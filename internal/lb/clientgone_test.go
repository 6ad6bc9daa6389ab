package lb

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestClientGoneMidHandshakeIsEOF: a client that closes in the middle of
// its CONNECT, TLS handshake or PROXY header went away; that is result=eof
// (with a reason saying what was incomplete), not result=error, which reads
// as a fault of the load balancer and counts in MqlbRefusalsRising.
func TestClientGoneMidHandshakeIsEOF(t *testing.T) {
	srv := testutil.NewCA(t).Server("lb")
	h := newHarness(t, harnessOpts{brokers: 1, listeners: fmt.Sprintf(
		"  - { name: mqtts, address: \"127.0.0.1:0\", upstream: brokers, tls: { cert: %q, key: %q } }\n"+
			"  - { name: behind-l4, address: \"127.0.0.1:0\", upstream: brokers, proxy_protocol: { accept: true, trusted: [\"127.0.0.0/8\"] } }\n",
		srv.CertFile, srv.KeyFile)})
	connect := []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'c'}
	cases := []struct {
		listener, send, reason string
	}{
		{"mqtt", "\x10", `reason="CONNECT incomplete: unexpected EOF"`},
		{"mqtt", string(connect[:9]), `reason="CONNECT incomplete: unexpected EOF"`},
		{"mqtt", "", ""}, // a port probe: no reason
		{"mqtts", "\x16\x03\x01\x00\x50\x01", `reason="TLS handshake failed: `},
		{"behind-l4", "PROXY TCP4 1.2.", `reason="bad or missing PROXY header from a trusted peer: `},
	}
	for _, tc := range cases {
		c, err := net.Dial("tcp", h.lb.ListenerAddr(tc.listener))
		if err != nil {
			t.Fatal(err)
		}
		if tc.send != "" {
			if _, err := c.Write([]byte(tc.send)); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
	}
	var lines []string
	testutil.Eventually(t, 5*time.Second, func() bool {
		lines = strings.Split(strings.TrimSpace(h.accessLog()), "\n")
		return len(lines) >= len(cases)
	}, "%d access log lines:\n%s", len(cases), h.accessLog())
	for _, tc := range cases {
		found := false
		for i, l := range lines {
			if strings.Contains(l, "listener="+tc.listener+" ") && strings.Contains(l, tc.reason) &&
				(tc.reason != "" || !strings.Contains(l, "reason=")) {
				found = true
				if !strings.Contains(l, "result=eof") {
					t.Errorf("%s %q logged as\n%s\nwant result=eof", tc.listener, tc.send, l)
				}
				lines = append(lines[:i], lines[i+1:]...)
				break
			}
		}
		if !found {
			t.Errorf("%s %q: no line with %s in\n%s", tc.listener, tc.send, tc.reason, strings.Join(lines, "\n"))
		}
	}
	m := metricsText(t, h)
	for _, want := range []string{
		`mqlb_connections_total{listener="mqtt",result="eof"} 3`,
		`mqlb_connections_total{listener="mqtts",result="eof"} 1`,
		`mqlb_connections_total{listener="behind-l4",result="eof"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "mqlb_connections_total"))
		}
	}
	if e := grepLines(m, `mqlb_connections_total`); strings.Contains(e, `result="error"`) {
		t.Errorf("counted as errors:\n%s", e)
	}
}
