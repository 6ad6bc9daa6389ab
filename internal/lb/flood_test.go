package lb

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/bench"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestFloodThroughRelay publishes as fast as four publishers can through
// the LB to mosquitto, which fans out small deliveries to four subscribers
// through the LB: the relay must never stall (it once left bytes behind in
// a socket after a splice that filled the pipe's slots, and waited for an
// edge that never came; nearly every QoS 0 message was then lost).
func TestFloodThroughRelay(t *testing.T) {
	m := testutil.StartMosquitto(t, "max_queued_messages 1000000\nmax_inflight_messages 0")
	h := newHarness(t, harnessOpts{servers: []string{m.Addr}})
	tg, err := bench.ParseTarget((&url.URL{Scheme: "mqtt", Host: h.addr}).String(), false, false, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, qos := range []byte{0, 1} {
		cfg := bench.PubSubConfig{PubTarget: tg, SubTarget: tg, Publishers: 4, Subscribers: 4, Topics: 4, QoS: qos,
			Size: 256, Duration: bench.D(2 * time.Second), Inflight: 20, Drain: bench.D(30 * time.Second), // ends when all arrived; a stall never does
			Timeout: bench.D(5 * time.Second), Prefix: "flood-", Client: bench.ClientLite}
		res, err := bench.RunPubSub(context.Background(), cfg)
		if err != nil {
			t.Fatalf("QoS %d: %v", qos, err)
		}
		t.Logf("QoS %d: published %d, received %d of %d, lost %d (%.0f msg/s)", qos, res.Published, res.Received, res.Expected, res.Lost, res.ReceivedRate)
		if res.Published < 1000 || res.Received < res.Expected*99/100 || (qos == 1 && res.Lost != 0) {
			t.Errorf("QoS %d: received %d of %d expected (lost %d): the relay stalled", qos, res.Received, res.Expected, res.Lost)
		}
	}
}
