package node

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// subscribeMany subscribes c to count distinct filters "<prefix>/<i>/...",
// i from first, in SUBSCRIBE packets of up to 500 filters. Every fourth
// filter ends in "#" (two NATS subjects), every fourth has a "+", and with
// shared every fourth is a shared subscription "$share/g/<prefix>/<i>/cmd".
func subscribeMany(t testing.TB, c *paho.Client, prefix string, first, count int, shared bool) {
	t.Helper()
	for start := first; start < first+count; start += 500 {
		var subs []paho.SubscribeOptions
		for i := start; i < min(start+500, first+count); i++ {
			subs = append(subs, paho.SubscribeOptions{Topic: manyFilter(prefix, i, shared), QoS: 1})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 4*waitFor)
		sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
		cancel()
		if err != nil {
			t.Fatalf("subscribe %d filters from %d: %v", len(subs), start, err)
		}
		for i, r := range sa.Reasons {
			if r != 1 {
				t.Fatalf("subscribe %s: reason %#x", subs[i].Topic, r)
			}
		}
	}
}

func manyFilter(prefix string, i int, shared bool) string {
	switch i % 4 {
	case 3:
		if shared {
			return fmt.Sprintf("$share/g/%s/%d/cmd", prefix, i)
		}
	case 1:
		return fmt.Sprintf("%s/%d/#", prefix, i)
	case 2:
		return fmt.Sprintf("%s/%d/+/cmd", prefix, i)
	}
	return fmt.Sprintf("%s/%d/cmd", prefix, i)
}

// manyTopic is a topic that filter i of manyFilter matches.
func manyTopic(prefix string, i int) string {
	if i%4 == 2 {
		return fmt.Sprintf("%s/%d/x/cmd", prefix, i)
	}
	return fmt.Sprintf("%s/%d/cmd", prefix, i)
}

// TestMeshInterestGoroutines: the goroutines of a node do not grow with the
// number of distinct filters its clients hold, plain or shared (each filter
// and each shared member used to hold an async NATS subscription, with a
// goroutine of its own), and messages still reach them across nodes.
func TestMeshInterestGoroutines(t *testing.T) {
	c := shared(t)
	const perClient = 1000 // mqtt.max_subscriptions_per_client's default
	subs := []*v5{dialV5(t, c.addr(0), "many-0", true, 0), dialV5(t, c.addr(1), "many-1", true, 0)}
	for i, s := range subs {
		subscribeMany(t, s.Client, fmt.Sprintf("many%d", i), 0, 1, true)
	}
	base := runtime.NumGoroutine()
	before := c.nodes[0].mesh.nsubs.Load() + c.nodes[1].mesh.nsubs.Load()
	for i, s := range subs {
		subscribeMany(t, s.Client, fmt.Sprintf("many%d", i), 1, perClient-1, true)
	}
	added := c.nodes[0].mesh.nsubs.Load() + c.nodes[1].mesh.nsubs.Load() - before
	if added < 2*(perClient-1) {
		t.Fatalf("mesh holds %d more NATS subscriptions, want at least %d", added, 2*(perClient-1))
	}
	const slack = 50 // goroutines that come and go on their own (timers, interest sync)
	testutil.Eventually(t, waitFor, func() bool { return runtime.NumGoroutine() <= base+slack },
		"goroutines %d after %d more filters (%d NATS subscriptions), %d before", runtime.NumGoroutine(), 2*(perClient-1), added, base)

	pub := dialV5(t, c.addr(2), "many-pub", true, 0)
	for i, s := range subs {
		for _, f := range []int{perClient - 1, perClient - 2, perClient - 3, perClient - 4} { // shared, +, #, plain
			topic := manyTopic(fmt.Sprintf("many%d", i), f)
			pub.send(t, topic, 1, topic)
			s.waitPayload(t, topic)
		}
	}
}

// TestMeshInboxBounded: an inbox holds at most its byte limit, counting the
// messages being handled; what arrives beyond it is dropped and counted as a
// slow consumer, and nothing it accepted is lost.
func TestMeshInboxBounded(t *testing.T) {
	n := loneNode(t, "inbox")
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	var handled atomic.Int64
	in := newMeshInbox(func(*nats.Msg) {
		<-release
		handled.Add(1)
	})
	in.maxBytes = 3 * len("s1234567")
	ctx, cancel := context.WithCancel(context.Background())
	in.start(ctx, n)
	defer func() {
		unblock()
		cancel()
		n.wg.Wait()
	}()
	for range 10 {
		in.ch <- &nats.Msg{Subject: "s", Data: []byte("1234567")}
	}
	drops := func() int64 { return n.metrics.drops.With("mesh_slow_consumer").Load() }
	testutil.Eventually(t, waitFor, func() bool { return drops() == 7 }, "dropped %d, want 7", drops())
	unblock()
	testutil.Eventually(t, waitFor, func() bool { return handled.Load() == 3 }, "handled %d, want 3", handled.Load())
	in.ch <- &nats.Msg{Subject: "s", Data: []byte("after")}
	testutil.Eventually(t, waitFor, func() bool { return handled.Load() == 4 }, "handled %d after the burst, want 4", handled.Load())
}

// BenchmarkMeshInterest: 50,000 distinct filters held by 6 clients (2 per
// node, mqtt.max_subscriptions_per_client lifted) across a 3-node
// in-process cluster, as devices each subscribed to their own topics. It
// reports goroutines before and after (the whole process: 3 nodes, their
// NATS servers, the clients), and heap and RSS growth per filter. One round
// whatever b.N:
//
//	go test -run XXX -bench MeshInterest -benchtime 1x ./internal/node/
func BenchmarkMeshInterest(b *testing.B) {
	const filters, perNode = 50_000, 2
	c, err := startCluster("meshint", 3, func(n *config.Node) { n.MQTT.MaxSubscriptionsPerClient = 0 })
	if err != nil {
		b.Fatal(err)
	}
	defer c.close()
	c.ready(b)
	var clients []*v5
	for i := range 3 * perNode {
		cl := dialV5(b, c.addr(i/perNode), fmt.Sprintf("many-%d", i), true, 0)
		subscribeMany(b, cl.Client, fmt.Sprintf("m%d", i), 0, 1, false)
		clients = append(clients, cl)
	}
	nsubs := func() (n int64) {
		for _, node := range c.nodes {
			n += node.mesh.nsubs.Load()
		}
		return n
	}
	goBefore, heapBefore, rssBefore, subsBefore := runtime.NumGoroutine(), heapInUse(), rss(b), nsubs()
	each := (filters - len(clients)) / len(clients)
	for i, cl := range clients {
		subscribeMany(b, cl.Client, fmt.Sprintf("m%d", i), 1, each, false)
	}
	held := each * len(clients)
	pub := dialV5(b, c.addr(0), "many-pub", true, 0)
	for i := len(clients) - 1; i >= 0; i-- { // every node delivers one, from node 0
		topic := manyTopic(fmt.Sprintf("m%d", i), each)
		pub.send(b, topic, 1, topic)
		clients[i].waitPayload(b, topic)
	}
	goAfter, heapAfter, rssAfter := runtime.NumGoroutine(), heapInUse(), rss(b)
	b.ReportMetric(float64(held), "filters")
	b.ReportMetric(float64(nsubs()-subsBefore), "nats_subs")
	b.ReportMetric(float64(goBefore), "goroutines_before")
	b.ReportMetric(float64(goAfter), "goroutines_after")
	b.ReportMetric(float64(heapAfter-heapBefore)/float64(held), "heap_B/filter")
	b.ReportMetric(float64(rssAfter-rssBefore)/float64(held), "rss_B/filter")
}

// heapInUse returns the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// rss returns the process's resident set size in bytes.
func rss(tb testing.TB) int64 {
	tb.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status:", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS in /proc/self/status")
	return 0
}
