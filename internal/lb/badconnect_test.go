package lb

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// Byte-annotated CONNECTs with strings mosquitto will not take: it closes
// the connection ("disconnected due to protocol error") without a CONNACK.
var (
	// An MQTT 3.1.1 CONNECT whose client id holds U+0001.
	connectIDControl = []byte{
		0x10, 15, // CONNECT, remaining length 15
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		4, 0x02, 0, 30, // level 4, clean session, keep alive 30
		0, 3, 'a', 0x01, 'b', // client id "a\x01b"
	}
	// An MQTT 5 CONNECT with a user property whose value holds U+0001.
	connectPropControl = []byte{
		0x10, 22, // CONNECT, remaining length 22
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		5, 0x02, 0, 30, // level 5, clean start, keep alive 30
		8,               // properties: 8 bytes
		0x26, 0, 1, 'k', // user property: name "k",
		0, 2, 'v', 0x01, //   value "v\x01"
		0, 1, 'p', // client id "p"
	}
)

// answerTo sends pkt and returns every byte the load balancer answers
// until it closes.
func answerTo(t testing.TB, addr string, pkt []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(pkt)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read % x, then %v (want the LB to close after its answer)", b, err)
	}
	return b
}

// TestBadStringsDoNotDownServers: CONNECTs that every mosquitto closes on
// (a control character in a string) are not charged to the brokers as
// passive failures: with fall 3, three of them through connect_retries 2
// used to mark all three down, and every client was then refused 0x03 until
// the health checks brought them back.
func TestBadStringsDoNotDownServers(t *testing.T) {
	var servers []string
	for range 3 {
		servers = append(servers, testutil.StartMosquitto(t, "").Addr)
	}
	h := newHarness(t, harnessOpts{servers: servers,
		upstream: "    connect_retries: 2\n    health_check: { type: mqtt, interval: 1m, timeout: 2s, rise: 1, fall: 3 }\n"})
	u := h.lb.Upstreams().Get("brokers")
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, s := range u.Servers {
			if !s.Healthy() {
				return false
			}
		}
		return true
	}, "every broker checked and up")
	for _, pkt := range [][]byte{connectIDControl, connectPropControl} {
		for range 3 {
			answerTo(t, h.addr, pkt)
		}
	}
	for _, s := range u.Servers {
		if s.Failures() != 0 || !s.Healthy() {
			t.Errorf("%s: failures %d healthy %v; want 0, up", s.Name(), s.Failures(), s.Healthy())
		}
	}
	if got := connackOf(t, h.addr, connectGood); string(got) != "\x20\x02\x00\x00" {
		t.Errorf("a good client after them got % x; want CONNACK 0", got)
	}
}

// connectGood is an MQTT 3.1.1 CONNECT as id "good".
var connectGood = []byte{
	0x10, 16, // CONNECT, remaining length 16
	0, 4, 'M', 'Q', 'T', 'T', // protocol name
	4, 0x02, 0, 30, // level 4, clean session, keep alive 30
	0, 4, 'g', 'o', 'o', 'd', // client id "good"
}

// CONNECTs whose strings the load balancer refuses before any broker sees
// them, with the CONNACK each version has for them.
var disallowedChars = []struct {
	name   string
	pkt    []byte
	answer string // "": closed without a CONNACK
}{
	{"v3.1.1 client id", connectIDControl, "\x20\x02\x00\x02"},
	{"v5 client id", []byte{
		0x10, 15, // CONNECT, remaining length 15
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		5, 0x02, 0, 30, // level 5, clean start, keep alive 30
		0,                // properties: none
		0, 2, 0xc2, 0x85, // client id: U+0085, a C1 control character
	}, "\x20\x03\x00\x85\x00"},
	{"v3.1.1 user name", []byte{
		0x10, 18, // CONNECT, remaining length 18
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		4, 0x82, 0, 30, // level 4, user name, clean session, keep alive 30
		0, 1, 'u', // client id "u"
		0, 3, 'a', '\t', 'b', // user name "a\tb"
	}, "\x20\x02\x00\x04"},
	{"v5 will topic", []byte{
		0x10, 23, // CONNECT, remaining length 23
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		5, 0x06, 0, 30, // level 5, will, clean start, keep alive 30
		0,         // properties: none
		0, 1, 'w', // client id "w"
		0,                    // will properties: none
		0, 3, 'a', '/', 0x1b, // will topic "a/\x1b"
		0, 1, 'x', // will payload "x"
	}, "\x20\x03\x00\x90\x00"},
	{"v3.1.1 will topic", []byte{
		0x10, 22, // CONNECT, remaining length 22
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		4, 0x06, 0, 30, // level 4, will, clean session, keep alive 30
		0, 1, 'w', // client id "w"
		0, 4, 'a', 0xef, 0xbf, 0xbf, // will topic "a\uffff": a non-character
		0, 1, 'x', // will payload "x"
	}, ""}, // 3.1.1 has no code for it: closed [v3.1.1 §1.5.3]
	{"v5 user property", connectPropControl, "\x20\x03\x00\x81\x00"}, // malformed (v5 §1.5.4)
}

// TestDisallowedCharsRefused: a client id, user name, will topic or v5
// string property holding a control character or a non-character is
// refused by the load balancer with the CONNACK its version has for it
// (none for a 3.1.1 will topic: closed), before any broker is dialled, with
// its own result.
func TestDisallowedCharsRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, upstream: noHealth})
	for _, tc := range disallowedChars {
		if got := answerTo(t, h.addr, tc.pkt); string(got) != tc.answer {
			t.Errorf("%s: answered % x; want % x", tc.name, got, tc.answer)
		}
	}
	if n := h.brokers[0].ConnectCount(); n != 0 {
		t.Errorf("the broker saw %d CONNECTs; want none", n)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return strings.Count(h.accessLog(), "result=disallowed_char") == len(disallowedChars)
	}, "%d access-log records with result=disallowed_char:\n%s", len(disallowedChars), h.accessLog())
	if !strings.Contains(h.accessLog(), `reason="mqttwire: control character or non-character in the user name"`) {
		t.Errorf("no reason naming the user name:\n%s", h.accessLog())
	}
}
