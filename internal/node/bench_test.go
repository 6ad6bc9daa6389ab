package node

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Throughput of one publisher and one subscriber, on different nodes of the
// shared cluster or on the same node:
//
//	go test -run XXX -bench . -benchtime 20000x ./internal/node/
//
// msgs/s counts messages received by the subscriber; QoS 1 publishes keep
// up to 64 unacknowledged PUBLISH packets in flight.
func BenchmarkCrossNode(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) { benchPubSub(b, 0, 1, qos) })
	}
}

func BenchmarkSameNode(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) { benchPubSub(b, 0, 0, qos) })
	}
}

func benchPubSub(b *testing.B, pubNode, subNode int, qos byte) {
	c := shared(b)
	topic := fmt.Sprintf("bench/%d%d/%d/%d", pubNode, subNode, qos, b.N)
	var got atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	sub := benchClient(b, c.addr(subNode), "bench-sub", func(paho.PublishReceived) (bool, error) {
		if got.Add(1) == target {
			close(done)
		}
		return true, nil
	})
	ctx := context.Background()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: qos}}}); err != nil {
		b.Fatal(err)
	}
	pub := benchClient(b, c.addr(pubNode), "bench-pub", nil)
	payload := make([]byte, 64)
	b.ResetTimer()
	start := time.Now()
	publishAll(b, pub, topic, qos, payload)
	lost := waitReceived(done, &got, target)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(got.Load())/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(lost), "lost")
	if lost > 0 {
		n := c.nodes[subNode]
		drops := map[string]int64{}
		for _, r := range dropReasons {
			if v := n.metrics.drops.With(r).Load(); v > 0 {
				drops[r] = v
			}
		}
		b.Logf("lost %d: subscriber node drops %v, mesh in %d", lost, drops, n.metrics.meshIn.Load())
	}
}

// publishAll sends b.N messages; QoS 1 from 64 goroutines sharing the client.
func publishAll(b *testing.B, pub *paho.Client, topic string, qos byte, payload []byte) {
	workers := 1
	if qos > 0 {
		workers = 64
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := pub.Publish(context.Background(), &paho.Publish{Topic: topic, QoS: qos, Payload: payload}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// waitReceived waits for all messages, or until none arrived for two
// seconds (QoS 0 may drop under overload); it returns how many were lost.
func waitReceived(done chan struct{}, got *atomic.Int64, target int64) int64 {
	last := got.Load()
	for {
		select {
		case <-done:
			return 0
		case <-time.After(2 * time.Second):
			now := got.Load()
			if now == last {
				return target - now
			}
			last = now
		}
	}
}

func benchClient(b *testing.B, addr, id string, onMsg func(paho.PublishReceived) (bool, error)) *paho.Client {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	cfg := paho.ClientConfig{ClientID: id, Conn: conn, OnClientError: func(error) {}}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onMsg}
	}
	cl := paho.NewClient(cfg)
	max := uint16(65535)
	if _, err := cl.Connect(context.Background(), &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &max}}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cl.Disconnect(&paho.Disconnect{}) })
	return cl
}
