package lb

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestMosquittoEndToEnd runs the LB in front of three mosquitto processes
// and uses mosquitto_pub/mosquitto_sub through it, as the seed documents do.
func TestMosquittoEndToEnd(t *testing.T) {
	testutil.NeedCommand(t, "mosquitto_pub")
	var servers []string
	for range 3 {
		servers = append(servers, testutil.StartMosquitto(t, "").Addr)
	}
	h := newHarness(t, harnessOpts{servers: servers, upstream: "    balance: client_id\n"})
	_, port, _ := net.SplitHostPort(h.addr)

	t.Run("pub sub", func(t *testing.T) {
		for _, v := range []string{"mqttv311", "mqttv5"} {
			// Subscriber and publisher share a broker: the same client id
			// would take the session over, so the publisher's id is chosen
			// to hash to the subscriber's broker.
			subID := "e2e-sub-" + v
			sub := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-V", v, "-i", subID, "-t", "e2e/#", "-C", "1", "-W", "15")
			var out bytes.Buffer
			sub.Stdout = &out
			if err := sub.Start(); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 10*time.Second, func() bool { return len(h.lb.Connections().List(subID)) == 1 }, "subscriber connected")
			subServer := h.lb.Connections().List(subID)[0].Record().Server
			pubID := sameServerID(t, h, subServer, "e2e-pub-"+v)
			pub := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-V", v, "-i", pubID, "-t", "e2e/"+v, "-m", "hello "+v, "-q", "1")
			if b, err := pub.CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub: %v %s", err, b)
			}
			if err := sub.Wait(); err != nil {
				t.Fatalf("mosquitto_sub: %v (output %q)", err, out.String())
			}
			if got := strings.TrimSpace(out.String()); got != "hello "+v {
				t.Errorf("%s: subscriber got %q", v, got)
			}
		}
	})
	t.Run("same client id, same broker", func(t *testing.T) {
		for range 5 {
			if b, err := exec.Command("mosquitto_pub", "-p", port, "-i", "thing001", "-t", "topic/test", "-m", "test123").CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub: %v %s", err, b)
			}
		}
		re := regexp.MustCompile(`client_id="thing001" .* server=(\S+) `)
		var seen map[string]int
		testutil.Eventually(t, 5*time.Second, func() bool {
			seen = map[string]int{}
			for _, m := range re.FindAllStringSubmatch(h.accessLog(), -1) {
				seen[m[1]]++
			}
			return len(seen) > 0 && sum(seen) == 5
		}, "5 access-log records for thing001")
		if len(seen) != 1 {
			t.Errorf("thing001 went to %v; want one broker every time", seen)
		}
	})
}

// sameServerID finds a client id with prefix that the client_id policy
// sends to server (all servers idle but the subscriber).
func sameServerID(t *testing.T, h *harness, server, prefix string) string {
	u := h.lb.Upstreams().Get("brokers")
	for i := range 200 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if s := u.Policy.Pick(&balanceConn{ClientID: id}, nil); s != nil && s.Name() == server {
			return id
		}
	}
	t.Fatalf("no client id for %s", server)
	return ""
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
