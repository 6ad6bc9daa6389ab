package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

var exchanges atomic.Int64

// exchange publishes n messages from a client of one kind to a subscriber of
// another through the broker at addr, and checks each arrived once, in order.
func exchange(t *testing.T, addr string, v5 bool, pubKind, subKind string, qos byte, n int) {
	t.Helper()
	name := fmt.Sprintf("%s → %s, v5=%v, QoS %d", pubKind, subKind, v5, qos)
	tg := target(t, addr, v5)
	ctx := context.Background()
	rec := newReceiver(1)
	var got atomic.Int64
	base := clientConfig{target: &tg, timeout: 5 * time.Second, inflight: 10}
	sc := base
	// Fresh client ids per exchange: mochi removes a client id's
	// subscriptions when its earlier connection's clean session ends, which
	// can come after the next connection under that id subscribed (0 of 500
	// delivered once in CI).
	seq := exchanges.Add(1)
	sc.kind, sc.id = subKind, fmt.Sprintf("interop-sub-%d", seq)
	sc.onMessage = func(p []byte) {
		if st, err := parsePayload(p, 42, 1); err == nil {
			rec.record(int(st.Pub), st.Seq)
			got.Add(1)
		}
	}
	sub, err := connectClient(ctx, sc)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer sub.disconnect()
	if err := sub.subscribe(ctx, "interop/t", qos); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	pc := base
	pc.kind, pc.id = pubKind, fmt.Sprintf("interop-pub-%d", seq)
	pub, err := connectClient(ctx, pc)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer pub.disconnect()
	for i := range n {
		p := appendPayload(nil, stamp{Run: 42, Seq: uint64(i), Sent: time.Now().UnixNano()}, 64)
		if err := pub.publish(ctx, "interop/t", qos, p); err != nil {
			t.Fatalf("%s: publish %d: %v", name, i, err)
		}
	}
	if err := pub.flush(ctx); err != nil {
		t.Fatalf("%s: flush: %v", name, err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return got.Load() >= int64(n) }, "%s: %d of %d delivered", name, got.Load(), n)
	c := account(routing{pubs: 1, subs: 1, topics: 1}, []int64{int64(n)}, []*receiver{rec})
	if c.Received != int64(n) || c.Lost+c.Duplicated+c.OutOfOrder != 0 {
		t.Errorf("%s: %+v", name, c)
	}
}

// TestLiteInteropPaho checks the light client's QoS 1 and 2 flows against an
// independent implementation on the other end: paho (3.1.1 and 5.0) through
// a mochi broker, in both directions.
func TestLiteInteropPaho(t *testing.T) {
	b := testutil.StartMochi(t)
	for _, v5 := range []bool{false, true} {
		for _, qos := range []byte{1, 2} {
			exchange(t, b.Addr, v5, ClientLite, ClientPaho, qos, 500)
			exchange(t, b.Addr, v5, ClientPaho, ClientLite, qos, 500)
		}
	}
}

// TestLiteMosquitto runs the light client's QoS 0, 1 and 2 flows through
// mosquitto when it is installed.
func TestLiteMosquitto(t *testing.T) {
	m := testutil.StartMosquitto(t, "")
	for _, v5 := range []bool{false, true} {
		for _, qos := range []byte{0, 1, 2} {
			exchange(t, m.Addr, v5, ClientLite, ClientLite, qos, 2000)
		}
	}
}
