package lb

import (
	"encoding/json"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestListenersAndHistory: the listener view counts refusals by reason, and
// the history samples every second with per-server totals.
func TestListenersAndHistory(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	base := "http://" + h.admin + "/api/v1"
	openRaw(t, h.addr, "hist-1")
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n")) // refused: not_mqtt
	c.Close()
	var ls struct {
		Listeners []struct {
			Name     string
			Accepted uint64
			Refused  map[string]uint64
		}
		Limits struct {
			MaxConnectPacket int `json:"max_connect_packet"`
		}
	}
	// Both are counted by the load balancer after the client has its
	// answer, so either may come a moment after the client saw it.
	testutil.Eventually(t, 5*time.Second, func() bool {
		_, body := testutil.HTTP(t, "GET", base+"/listeners", "")
		return json.Unmarshal([]byte(body), &ls) == nil && len(ls.Listeners) == 1 &&
			ls.Listeners[0].Refused["not_mqtt"] == 1 && ls.Listeners[0].Accepted == 1
	}, "listener acceptance and refusal counted")
	if ls.Limits.MaxConnectPacket == 0 {
		t.Errorf("listeners: %+v", ls)
	}
	var hist struct {
		Samples []struct {
			T       int64
			Servers map[string]struct{ Active, Total int64 }
			Refused map[string]uint64
		}
		Servers map[string]struct {
			MaxActive int64 `json:"max_active"`
			State     string
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		_, body := testutil.HTTP(t, "GET", base+"/history", "")
		json.Unmarshal([]byte(body), &hist)
		n := len(hist.Samples)
		return n >= 2 && hist.Samples[n-1].Refused["mqtt"] == 1 && hist.Samples[n-1].Servers["brokers/b0"].Active == 1
	}, "history samples")
	if s := hist.Servers["brokers/b0"]; s.MaxActive != 1 || s.State != "up" {
		t.Errorf("server history: %+v", s)
	}
	last := hist.Samples[len(hist.Samples)-1].T
	_, body := testutil.HTTP(t, "GET", base+"/history?since="+strconv.FormatInt(last, 10), "")
	json.Unmarshal([]byte(body), &hist)
	for _, s := range hist.Samples {
		if s.T <= last {
			t.Errorf("since=%d returned a sample at %d", last, s.T)
		}
	}
}
