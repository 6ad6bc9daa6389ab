package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// Clients that stop reading their socket (listen/send.go): the node never
// waits for them, bounds what it keeps for each, and never writes a part of
// a packet followed by more.

// slowDial opens a raw connection whose receive buffer is a few KiB (set
// before connecting, so the window it announces stays that small): what
// the node writes to a client that does not read stays in the node.
func slowDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	return dialWith(t, net.Dialer{Timeout: 2 * time.Second, Control: testutil.SmallWindow}, addr)
}

// connectV4 sends a 3.1.1 CONNECT (clean session, keepAlive seconds) and
// reads its CONNACK.
func connectV4(t *testing.T, c net.Conn, id string, keepAlive uint16) {
	t.Helper()
	write(t, c, mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, KeepAlive: keepAlive, ClientID: id}))
	if code := readConnack(t, c, 4); code != 0 {
		t.Fatalf("CONNACK %#x for %s", code, id)
	}
}

// subscribeV4 subscribes c to filter at qos (packet id 1) and reads the
// SUBACK.
func subscribeV4(t *testing.T, c net.Conn, filter string, qos byte) {
	t.Helper()
	body := append([]byte{0, 1, byte(len(filter) >> 8), byte(len(filter))}, filter...)
	body = append(body, qos)
	write(t, c, append(mqttwire.AppendVarint([]byte{0x82}, len(body)), body...))
	if codes := readSuback(t, c); len(codes) != 1 || codes[0] != qos {
		t.Fatalf("SUBACK %x for %s", codes, filter)
	}
}

// publishV4 is a 3.1.1 QoS 0 PUBLISH.
func publishV4(topic string, payload []byte) []byte {
	b := mqttwire.AppendVarint([]byte{0x30}, 2+len(topic)+len(payload))
	b = append(b, byte(len(topic)>>8), byte(len(topic)))
	return append(append(b, topic...), payload...)
}

// readPacket reads one packet: its first byte and its body.
func readPacket(r io.Reader) (byte, []byte, error) {
	var h [1]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	size, mult := 0, 1
	for i := 0; ; i++ {
		var b [1]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		size += int(b[0]&127) * mult
		mult *= 128
		if b[0]&128 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("remaining length over 4 bytes")
		}
	}
	body := make([]byte, size)
	_, err := io.ReadFull(r, body)
	return h[0], body, err
}

// stopReading makes c a subscriber to filter that then stops reading: it
// waits until a message to probe reaches it (its subscription is in place
// all the way, across the mesh too), publishing with send until then.
func stopReading(t *testing.T, c net.Conn, probe string, send func(topic string)) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		send(probe)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		h, _, err := readPacket(c)
		if err == nil && h>>4 == 3 {
			break
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) || time.Now().After(deadline) {
			t.Fatalf("the probe did not reach the subscriber: %v", err)
		}
	}
	_ = c.SetReadDeadline(time.Time{})
}

// publishQoS1 publishes count QoS 1 messages of size bytes to topic, each
// waiting for its PUBACK at most waitFor.
func publishQoS1(t *testing.T, pub *v5, topic string, count, size int) {
	t.Helper()
	payload := make([]byte, size)
	for i := range count {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		_, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
		cancel()
		if err != nil {
			t.Fatalf("publish %d of %d to %s: no PUBACK within %s: %v", i+1, count, topic, waitFor, err)
		}
	}
}

// stuckCount is how many 8 KiB messages fill a non-reading client's socket
// buffers many times over (4.8 MB), and stay below the default
// mqtt.max_queued_bytes.
const stuckCount, stuckSize = 600, 8 << 10

// TestStuckSubscriberDoesNotStopPublishers: a QoS 1 subscriber that stops
// reading its socket (keep-alive 0: for ever) does not stop a publisher to
// its topic on the same node from getting its PUBACKs, nor another
// subscriber from getting the messages; an operator kick of it returns.
// (mochi writes to a client holding its lock, and every QoS 1 delivery to
// the client takes that lock: a write waiting on the client stopped them
// all.)
func TestStuckSubscriberDoesNotStopPublishers(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	stuck := slowDial(t, addr)
	connectV4(t, stuck, "hol-stuck", 0)
	subscribeV4(t, stuck, "hol/#", 1)
	other := dialV5(t, addr, "hol-other", true, 0)
	other.sub(t, "hol/#", 1)
	pub := dialV5(t, addr, "hol-pub", true, 0)
	stopReading(t, stuck, "hol/probe", func(topic string) { pub.send(t, topic, 1, "probe") })

	publishQoS1(t, pub, "hol/t", stuckCount, stuckSize)
	got := func() (k int) {
		for _, m := range other.all() {
			if m.topic == "hol/t" {
				k++
			}
		}
		return k
	}
	testutil.Eventually(t, waitFor, func() bool { return got() == stuckCount }, "the other subscriber got %d of %d messages", got(), stuckCount)

	client := &http.Client{Timeout: waitFor}
	req, _ := http.NewRequest("DELETE", "http://"+n.AdminAddr()+"/api/v1/clients/hol-stuck", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("kick of the stuck client: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("kick of the stuck client: %s", resp.Status)
	}
}

// TestStuckSubscriberDoesNotStopMeshInbox: in a 2-node cluster, a QoS 1
// subscriber that stops reading does not stop the messages other nodes
// publish from reaching the other clients of its node (the node hands the
// mesh's messages to its clients from one goroutine).
func TestStuckSubscriberDoesNotStopMeshInbox(t *testing.T) {
	c, err := startCluster("hol", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { quiesce(); c.close() })
	c.ready(t)
	stuck := slowDial(t, c.addr(1))
	connectV4(t, stuck, "xhol-stuck", 0)
	subscribeV4(t, stuck, "xhol/#", 1)
	other := dialV5(t, c.addr(1), "xhol-other", true, 0)
	other.sub(t, "xother/#", 1)
	pub := dialV5(t, c.addr(0), "xhol-pub", true, 0)
	stopReading(t, stuck, "xhol/probe", func(topic string) { pub.send(t, topic, 1, "probe") })

	publishQoS1(t, pub, "xhol/t", stuckCount, stuckSize)
	const others = 20
	for i := range others {
		pub.send(t, "xother/t", 1, fmt.Sprint(i))
	}
	testutil.Eventually(t, waitFor, func() bool { return other.count() >= others },
		"the other subscriber on the stuck client's node got %d of %d messages from the other node", other.count(), others)
}

// TestSlowConsumerDisconnected: a subscriber that never reads is
// disconnected once more than mqtt.max_queued_bytes waits for it, and
// counted; what the node holds for it stays bounded meanwhile.
func TestSlowConsumerDisconnected(t *testing.T) {
	const maxQueued = 256 << 10
	n := soloNode(t, func(c *config.Node) {
		c.MQTT.MaxPacketSize = 64 << 10
		c.MQTT.MaxQueuedBytes = maxQueued
	})
	addr := n.ListenerAddr("tcp")
	stuck := slowDial(t, addr)
	connectV4(t, stuck, "slow-sub", 0)
	subscribeV4(t, stuck, "slow/#", 0)
	pub := rawDial(t, addr)
	connectV4(t, pub, "slow-pub", 0)
	stopReading(t, stuck, "slow/probe", func(topic string) { write(t, pub, publishV4(topic, []byte("probe"))) })

	before := n.metrics.slowConsumers.Load()
	gone := func() bool {
		cl, ok := n.broker.Clients.Get("slow-sub")
		return !ok || cl.Closed()
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	const budget = 64 << 20 // bytes published before giving up
	msg := publishV4("slow/t", make([]byte, 16<<10))
	sent := 0
	for ; sent < budget && !gone(); sent += 64 * len(msg) {
		for range 64 {
			write(t, pub, msg)
		}
		// The live heap: garbage not yet collected (more of it on a
		// loaded machine, where the collector runs behind) is not held.
		runtime.GC()
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
	}
	if !gone() {
		t.Fatalf("the subscriber that never reads is still connected after %d MB published to it (slow consumers counted: %d)",
			sent>>20, n.metrics.slowConsumers.Load()-before)
	}
	t.Logf("disconnected after %.1f MB published; heap grew by at most %.1f MB", float64(sent)/1e6, float64(peak-base)/1e6)
	if d := n.metrics.slowConsumers.Load() - before; d != 1 {
		t.Errorf("slow_consumers_total went up by %d, want 1", d)
	}
	if grew := peak - base; grew > 32<<20 {
		t.Errorf("live heap grew by %d MB before the slow consumer was closed (max_queued_bytes %d KiB)", grew>>20, maxQueued>>10)
	}
	_ = stuck.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := io.Copy(io.Discard, stuck); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the slow consumer's connection: %v, want it closed", err)
	}
	// The publisher goes on.
	write(t, pub, mqttwire.AppendPingreq(nil))
	if h, _, err := readPacket(pub); err != nil || h != 0xd0 {
		t.Fatalf("publisher's PINGRESP: %#x %v", h, err)
	}
}

// TestNoTruncatedPacket: a subscriber that stops reading for longer than
// its keep-alive deadline, pinging meanwhile, then reads, receives only
// whole packets. (A write that timed out part-way used to leave the rest
// of its packet unwritten and the connection going on with the next ones.)
func TestNoTruncatedPacket(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	sub := slowDial(t, addr)
	connectV4(t, sub, "trunc-sub", 1) // deadline 1.5 s after each packet
	subscribeV4(t, sub, "trunc/#", 0)
	pub := rawDial(t, addr)
	connectV4(t, pub, "trunc-pub", 0)
	stopReading(t, sub, "trunc/probe", func(topic string) { write(t, pub, publishV4(topic, []byte("probe"))) })

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // the client's keep-alive, while it does not read
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := sub.Write(mqttwire.AppendPingreq(nil)); err != nil {
					return
				}
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)

	const count, size = 1000, 8 << 10 // 8 MB: more than the socket buffers take
	payload := make([]byte, size)
	for range count {
		write(t, pub, publishV4("trunc/t", payload))
	}
	// Not reading for longer than the keep-alive deadline (1.5 s, moved at
	// most once a second): the scenario, not synchronisation.
	time.Sleep(4 * time.Second)

	_ = sub.SetReadDeadline(time.Now().Add(waitFor))
	want := 2 + len("trunc/t") + size
	publishes, pings, read := 0, 0, 0
	for publishes < count {
		h, body, err := readPacket(sub)
		switch {
		case err != nil:
			t.Fatalf("after %d whole PUBLISHes and %d PINGRESPs (%d bytes): %v", publishes, pings, read, err)
		case h == 0x30 && len(body) == want && strings.HasPrefix(string(body[2:]), "trunc/t"):
			publishes++
		case h == 0xd0 && len(body) == 0:
			pings++
		default:
			t.Fatalf("after %d whole PUBLISHes and %d PINGRESPs (%d bytes): a packet %#x of %d bytes starting %q, want a PUBLISH of %d bytes or a PINGRESP",
				publishes, pings, read, h, len(body), body[:min(len(body), 16)], want)
		}
		read += 1 + len(mqttwire.AppendVarint(nil, len(body))) + len(body)
	}
}
