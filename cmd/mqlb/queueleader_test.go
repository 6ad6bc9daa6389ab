package main

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqlb/mqlb/internal/testutil"
)

// queueLeader returns the node leading the session queue stream, as node
// p's admin API reports it ("" while none).
func queueLeader(p *nodeProc) string { return storeLeader(p, "_queue") }

// TestQueueLeaderKilledPublishersStay: kill -9 of the node leading the
// session queue stream disconnects no MQTT 3.1.1 QoS 1 publisher on the
// other nodes. Their publishes wait for the stream's new leader and are
// acknowledged once stored, instead of the publisher being disconnected
// (3.1.1 has no negative PUBACK) and resending. Nothing acknowledged is
// lost on the way to a persistent subscriber on the third node.
func TestQueueLeaderKilledPublishersStay(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := startDurableCluster(t, "replicated")
	var leader string
	testutil.Eventually(t, 30*time.Second, func() bool { leader = queueLeader(c.nodes[0]); return leader != "" }, "queue stream leader")
	var victim *nodeProc
	var survivors []*nodeProc
	for _, p := range c.nodes {
		if p.name == leader {
			victim = p
		} else {
			survivors = append(survivors, p)
		}
	}
	if victim == nil || len(survivors) != 2 {
		t.Fatalf("queue stream leader %q is not one of the nodes", leader)
	}
	t.Logf("queue stream leader %s; subscriber on %s, publishers on %s", victim.name, survivors[0].name, survivors[1].name)

	const topic = "leader/numbers"
	got := newCounter("leader-sub", 1)
	var subLost atomic.Int32
	subOpts := mqtt3.NewClientOptions().AddBroker("tcp://" + survivors[0].tcp).SetClientID(got.id).
		SetProtocolVersion(4).SetCleanSession(false).SetKeepAlive(10 * time.Second).SetOrderMatters(false).
		SetConnectionLostHandler(func(mqtt3.Client, error) { subLost.Add(1) })
	sub := mqtt3.NewClient(subOpts)
	if tok := sub.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { sub.Disconnect(100) })
	if tok := sub.Subscribe(topic, 1, func(_ mqtt3.Client, m mqtt3.Message) { got.add(m.Payload()) }); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	// Publishers: 3.1.1, QoS 1, each with up to 8 publishes in flight, on
	// the node that is neither the leader nor the subscriber's.
	const publishers = 4
	var pubLost atomic.Int32
	var (
		mu    sync.Mutex
		acked []int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range publishers {
		opts := mqtt3.NewClientOptions().AddBroker("tcp://" + survivors[1].tcp).SetClientID(fmt.Sprintf("leader-pub-%d", i)).
			SetProtocolVersion(4).SetCleanSession(false).SetKeepAlive(10 * time.Second).
			SetConnectionLostHandler(func(_ mqtt3.Client, err error) { pubLost.Add(1); t.Logf("publisher %d disconnected: %v", i, err) })
		pub := mqtt3.NewClient(opts)
		if tok := pub.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("publisher connect: %v", tok.Error())
		}
		t.Cleanup(func() { pub.Disconnect(100) })
		wg.Go(func() {
			inflight := make(chan struct{}, 8)
			var pwg sync.WaitGroup
			defer pwg.Wait()
			for n := i; ; n += publishers {
				select {
				case <-stop:
					return
				case inflight <- struct{}{}:
				}
				tok := pub.Publish(topic, 1, false, strconv.Itoa(n))
				pwg.Go(func() {
					defer func() { <-inflight }()
					if tok.WaitTimeout(60*time.Second) && tok.Error() == nil {
						mu.Lock()
						acked = append(acked, n)
						mu.Unlock()
					}
				})
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testutil.Eventually(t, 20*time.Second, func() bool { return count() >= 500 }, "500 publishes acknowledged before the kill")
	victim.kill()
	killed := count()
	// Publish on until well after the new leader took over.
	testutil.Eventually(t, 30*time.Second, func() bool {
		l := queueLeader(survivors[0])
		return l != "" && l != victim.name
	}, "a new queue stream leader")
	elected := count()
	testutil.Eventually(t, 30*time.Second, func() bool { return count() >= elected+500 }, "500 publishes acknowledged after the election")
	close(stop)
	wg.Wait()
	mu.Lock()
	want := append([]int(nil), acked...)
	mu.Unlock()
	t.Logf("acknowledged %d (%d before the kill, %d before the new leader was seen)", len(want), killed, elected)
	testutil.Eventually(t, 30*time.Second, func() bool { lost, _ := got.tally(want); return lost == 0 }, "every acknowledged message delivered")
	lost, dups := got.tally(want)
	t.Logf("subscriber: lost %d, duplicates %d, disconnected %d times; queue writes tried again on %s: %d",
		lost, dups, subLost.Load(), survivors[1].name, survivors[1].metric("mqlb_node_queue_retries_total{"))
	if n := pubLost.Load(); n != 0 {
		c.logWarnings(t)
		t.Errorf("publishers on a surviving node were disconnected %d times while the queue stream elected a leader", n)
	}
}
