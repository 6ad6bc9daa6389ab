package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/lb"
	"github.com/mqlb/mqlb/internal/testutil"
)

// The durability tests run three `mqlb node` processes behind an in-process
// load balancer, kill -9 one of them while messages flow, and count what the
// persistent-session subscribers lost.

// nodeProc is one `mqlb node` process.
type nodeProc struct {
	name                   string
	cmd                    *exec.Cmd
	done                   chan struct{}
	log                    *testutil.SyncBuffer
	tcp, lb, route, admin  string
	configFile, durability string
}

// startNodeProc starts `mqlb node` and waits for its "node started" line,
// which reports the addresses it bound (every port is 0).
func startNodeProc(t *testing.T, dir, name, durability string, peers []string, nodeKeys ...string) *nodeProc {
	t.Helper()
	peerList, _ := json.Marshal(peers)
	extra := ""
	for _, k := range nodeKeys {
		extra += ", " + k
	}
	cfg := fmt.Sprintf(`node: { name: %s, data_dir: %q%s }
listeners:
  - { name: tcp, address: "127.0.0.1:0" }
  - { name: lb, address: "127.0.0.1:0", proxy_protocol: { accept: true, trusted: ["127.0.0.1/32"] } }
mesh: { cluster_name: dur, listen: "127.0.0.1:0", peers: %s, replicas: 3, timeout: 2s }
sessions: { durability: %s, max_offline_messages: 0 }
admin: { address: "127.0.0.1:0" }
log: { format: json, level: info }
`, name, filepath.Join(dir, name), extra, peerList, durability)
	p := &nodeProc{name: name, configFile: filepath.Join(dir, name+".yaml"), durability: durability,
		log: new(testutil.SyncBuffer), done: make(chan struct{})}
	if err := os.WriteFile(p.configFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd = mqlb("node", "-c", p.configFile)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan map[string]any, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.log.Write(append(line, '\n'))
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["msg"] == "node started" {
				started <- rec
			}
		}
		io.Copy(io.Discard, stderr)
		p.cmd.Wait()
	}()
	t.Cleanup(p.kill)
	select {
	case rec := <-started:
		ls, _ := rec["listeners"].(map[string]any)
		p.tcp, _ = ls["tcp"].(string)
		p.lb, _ = ls["lb"].(string)
		p.route, _ = rec["route"].(string)
		p.admin, _ = rec["admin"].(string)
	case <-p.done:
		t.Fatalf("node %s exited:\n%s", name, p.log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("node %s did not start:\n%s", name, p.log.String())
	}
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *nodeProc) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
	if dir := os.Getenv("MQLB_TEST_LOGDIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, p.name+".log"), []byte(p.log.String()), 0o644)
	}
}

func (p *nodeProc) healthy() bool {
	resp, err := http.Get("http://" + p.admin + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// connections reads mqlb_node_connections from the node's metrics.
func (p *nodeProc) connections() int { return p.metric("mqlb_node_connections{") }

// durableCluster is three node processes and a load balancer in front.
type durableCluster struct {
	nodes  []*nodeProc
	lbAddr string
}

func startDurableCluster(t *testing.T, durability string) *durableCluster {
	t.Helper()
	dir := t.TempDir()
	c := &durableCluster{}
	first := startNodeProc(t, dir, "n1", durability, nil)
	// n2 and n3 at once: with replicas 3 the store forms once both are there.
	others := make([]*nodeProc, 2)
	var wg sync.WaitGroup
	for i := range others {
		wg.Go(func() { others[i] = startNodeProc(t, dir, fmt.Sprintf("n%d", i+2), durability, []string{first.route}) })
	}
	wg.Wait()
	if others[0] == nil || others[1] == nil {
		t.FailNow()
	}
	c.nodes = append(c.nodes, first, others[0], others[1])
	for _, p := range c.nodes {
		testutil.Eventually(t, 60*time.Second, p.healthy, "node %s healthy; log:\n%s", p.name, p.log.String())
	}
	var b strings.Builder
	b.WriteString("listeners: [{ name: mqtt, address: \"127.0.0.1:0\", upstream: cluster }]\n")
	b.WriteString("upstreams:\n  cluster:\n    balance: client_id\n    proxy_protocol: v2\n")
	b.WriteString("    health_check: { type: mqtt, interval: 500ms, timeout: 500ms, rise: 1, fall: 1 }\n    servers:\n")
	for _, p := range c.nodes {
		fmt.Fprintf(&b, "      - { name: %s, address: %q }\n", p.name, p.lb)
	}
	fmt.Fprintf(&b, "admin: { address: \"127.0.0.1:0\" }\naccess_log: { path: %q }\nlimits: { shutdown_grace: 1s }\n", filepath.Join(dir, "access.log"))
	cfg, err := config.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	l, err := lb.New(cfg, lb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { l.Run(ctx); close(ran) }()
	t.Cleanup(func() { cancel(); <-ran })
	testutil.Eventually(t, 10*time.Second, func() bool { return l.ListenerAddr("mqtt") != "" }, "load balancer listening")
	c.lbAddr = l.ListenerAddr("mqtt")
	return c
}

// logWarnings logs the nodes' warnings and errors.
func (c *durableCluster) logWarnings(t *testing.T) {
	for _, p := range c.nodes {
		for _, line := range strings.Split(p.log.String(), "\n") {
			if (strings.Contains(line, `"WARN"`) || strings.Contains(line, `"ERROR"`)) && !strings.Contains(line, `"component":"nats"`) && !strings.Contains(line, "publish packet error") {
				t.Logf("%s: %s", p.name, line)
			}
		}
	}
}

// busiest returns the node with the most MQTT connections.
func (c *durableCluster) busiest() *nodeProc {
	best := c.nodes[0]
	for _, p := range c.nodes[1:] {
		if p.connections() > best.connections() {
			best = p
		}
	}
	return best
}

// counter counts what one subscriber received, by message number.
type counter struct {
	id     string
	qos    byte
	mu     sync.Mutex
	got    map[int]int
	ups    []time.Time // connection (re)established
	resume []bool      // session present on each
	total  atomic.Int64
	died   atomic.Bool // the client process ended before the test stopped it
}

func newCounter(id string, qos byte) *counter { return &counter{id: id, qos: qos, got: map[int]int{}} }

func (c *counter) add(payload []byte) {
	n, err := strconv.Atoi(string(payload))
	if err != nil {
		return
	}
	c.mu.Lock()
	c.got[n]++
	c.mu.Unlock()
	c.total.Add(1)
}

func (c *counter) up(present bool) {
	c.mu.Lock()
	c.ups = append(c.ups, time.Now())
	c.resume = append(c.resume, present)
	c.mu.Unlock()
}

// tally returns how many of want never arrived and how many arrived more
// than once (extra copies).
func (c *counter) tally(want []int) (lost, dups int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range want {
		switch k := c.got[n]; {
		case k == 0:
			lost++
		case k > 1:
			dups += k - 1
		}
	}
	return lost, dups
}

// twice returns up to 5 of the numbers that arrived more than once, and
// up to 5 of want that never arrived, for the log.
func (c *counter) twice(want []int) (dup, missing []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range want {
		switch k := c.got[n]; {
		case k == 0 && len(missing) < 5:
			missing = append(missing, n)
		case k > 1 && len(dup) < 5:
			dup = append(dup, n)
		}
	}
	return dup, missing
}

// reconnectedAfter returns when the client was connected again after t
// (zero if not yet) and whether that connection resumed its session.
func (c *counter) reconnectedAfter(t time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, u := range c.ups {
		if u.After(t) {
			return u, c.resume[i]
		}
	}
	return time.Time{}, false
}

const durableTopic = "durable/numbers"

// subscribeV5 connects a persistent v5 session through addr (autopaho,
// reconnecting on its own) and, when fresh, starts it clean and subscribes
// at qos. It returns a func that disconnects (the session stays).
func subscribeV5(t *testing.T, addr string, c *counter, fresh bool) func() {
	t.Helper()
	u, _ := url.Parse("mqtt://" + addr)
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 10, SessionExpiryInterval: 600,
		CleanStartOnInitialConnection: fresh,
		ReconnectBackoff:              autopaho.NewConstantBackoff(200 * time.Millisecond),
		ConnectTimeout:                5 * time.Second,
		OnConnectionUp: func(_ *autopaho.ConnectionManager, ca *paho.Connack) {
			c.up(ca.SessionPresent)
		},
		ClientConfig: paho.ClientConfig{
			ClientID: c.id,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
				c.add(r.Packet.Payload)
				return true, nil
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
			cm.Disconnect(dctx)
			dcancel()
			cancel()
		})
	}
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := cm.AwaitConnection(wctx); err != nil {
		t.Fatalf("%s: %v", c.id, err)
	}
	if !fresh {
		return stop
	}
	if _, err := cm.Subscribe(wctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: durableTopic, QoS: c.qos}}}); err != nil {
		t.Fatalf("%s subscribe: %v", c.id, err)
	}
	return stop
}

// subscribeV3 connects a persistent 3.1.1 session (clean session 0) through
// addr (paho.mqtt.golang, reconnecting on its own) and, when fresh,
// subscribes at qos. It returns a func that disconnects.
func subscribeV3(t *testing.T, addr string, c *counter, fresh bool) func() {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(c.id).SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).SetKeepAlive(10 * time.Second).
		SetOrderMatters(false).SetConnectTimeout(5 * time.Second)
	o.SetOnConnectHandler(func(cl mqtt3.Client) { c.up(true) })
	o.SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { c.add(m.Payload()) })
	cl := mqtt3.NewClient(o)
	if tok := cl.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("%s connect: %v", c.id, tok.Error())
	}
	var once sync.Once
	stop := func() { once.Do(func() { cl.Disconnect(100) }) }
	t.Cleanup(stop)
	if !fresh {
		return stop
	}
	if tok := cl.Subscribe(durableTopic, c.qos, nil); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("%s subscribe: %v", c.id, tok.Error())
	}
	return stop
}

// subscribeQoS2 runs testdata/qos2sub.py (paho-mqtt for Python) as a
// persistent QoS 2 session through addr: it keeps its QoS 2 receiver state
// across its reconnects and hands a message on at PUBREL [MQTT-4.3.3],
// which the Go paho clients do not (paho.mqtt.golang delivers every QoS 2
// PUBLISH it reads; paho.golang delivers before it records the packet id,
// so a PUBLISH read just before the connection dropped comes again). It
// retries when refused and subscribes on every connection. version is 4 or
// 5. It returns a func that disconnects (the session stays).
func subscribeQoS2(t *testing.T, addr string, c *counter, version int) func() {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(pythonWithPaho(t), "testdata/qos2sub.py", host, port, c.id, durableTopic, strconv.Itoa(version))
	if dir := os.Getenv("MQLB_TEST_LOGDIR"); dir != "" {
		f, _ := os.Create(filepath.Join(dir, c.id+".log"))
		cmd.Stderr = f
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	subscribed, done := make(chan struct{}, 1), make(chan struct{})
	var stopping atomic.Bool
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			switch f := strings.Fields(sc.Text()); {
			case len(f) == 3 && f[0] == "CONNACK":
				if f[1] == "0" {
					c.up(f[2] == "1")
				}
			case len(f) == 1 && f[0] == "SUBACK":
				select {
				case subscribed <- struct{}{}:
				default:
				}
			case len(f) == 1:
				c.add([]byte(f[0]))
			}
		}
		cmd.Wait()
		if !stopping.Load() {
			c.died.Store(true)
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			stopping.Store(true)
			cmd.Process.Signal(syscall.SIGTERM) // DISCONNECT, then exit
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-subscribed:
	case <-done:
		t.Fatalf("%s: qos2sub.py exited", c.id)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: qos2sub.py not subscribed after 20 s", c.id)
	}
	return stop
}

// pythonWithPaho returns Debian's python3 when it has paho-mqtt
// (python3-paho-mqtt), else skips the test (fails it in CI).
func pythonWithPaho(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if exec.Command(py, "-c", "import paho.mqtt.client").Run() == nil {
		return py
	}
	if os.Getenv("CI") != "" {
		t.Fatal("python3-paho-mqtt not installed in CI (apt-get install -y python3-paho-mqtt)")
	}
	t.Skip("python3-paho-mqtt not installed (apt-get install -y python3-paho-mqtt)")
	return ""
}

// publisherV5 connects a plain v5 publisher straight to a node; it does
// not reconnect, so the test sees the end of its connection.
func publisherV5(t *testing.T, addr, id string) *autopaho.ConnectionManager {
	t.Helper()
	u, _ := url.Parse("mqtt://" + addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mctx, mcancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(mctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 10, CleanStartOnInitialConnection: true,
		ReconnectBackoff: autopaho.NewConstantBackoff(time.Hour),
		ClientConfig:     paho.ClientConfig{ClientID: id},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatalf("publisher %s: %v", id, err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		cm.Disconnect(dctx)
		dcancel()
		mcancel()
	})
	return cm
}

// publish sends numbers from..to-1 at QoS qos, one every interval, and
// returns those the node acknowledged. onSent runs after each one.
func publish(cm *autopaho.ConnectionManager, qos byte, from, to int, interval time.Duration, onSent func(i int) (more bool)) []int {
	var acked []int
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := from; i < to; i++ {
		<-tick.C
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := cm.Publish(ctx, &paho.Publish{Topic: durableTopic, QoS: qos, Payload: []byte(strconv.Itoa(i))})
		cancel()
		// paho.golang returns a refusing PUBREC (reason >= 0x80) without an error
		if err == nil && (resp == nil || resp.ReasonCode < 0x80) {
			acked = append(acked, i)
		}
		if onSent != nil && !onSent(i) {
			break
		}
	}
	return acked
}

// burstFrom is the first number of publishBurst's messages in the
// subscriber-node kill (after the steady publisher's).
const burstFrom = 100_000

// publishBurst sends numbers from..to-1 at QoS qos from workers goroutines
// at once, as fast as acknowledged (so that the node stores them in queue
// batches), and returns those the node acknowledged.
func publishBurst(cm *autopaho.ConnectionManager, qos byte, from, to, workers int) []int {
	var mu sync.Mutex
	var acked []int
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := from + w; i < to; i += workers {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := cm.Publish(ctx, &paho.Publish{Topic: durableTopic, QoS: qos, Payload: []byte(strconv.Itoa(i))})
				cancel()
				if err == nil && (resp == nil || resp.ReasonCode < 0x80) {
					mu.Lock()
					acked = append(acked, i)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(acked)
	return acked
}

// metric reads a counter or gauge of the node's metrics (-1: not found).
func (p *nodeProc) metric(prefix string) int {
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && strings.HasPrefix(f[0], prefix) {
			v, _ := strconv.ParseFloat(f[1], 64)
			return int(v)
		}
	}
	return -1
}

// subscribers connects 20 persistent sessions through the load balancer:
// 10 v3.1.1 and 10 v5, half of each at QoS 1 (Go paho clients), half at
// QoS 2 (paho-mqtt for Python). It returns them and a func that disconnects them all
// (their sessions stay).
func (c *durableCluster) subscribers(t *testing.T, prefix string) ([]*counter, func()) {
	var out []*counter
	var stops []func()
	for i := range 20 {
		qos := byte(1 + i%2)
		ct := newCounter(fmt.Sprintf("%s-%d-q%d", prefix, i, qos), qos)
		if i < 10 {
			ct.id = "v3-" + ct.id
		} else {
			ct.id = "v5-" + ct.id
		}
		stops = append(stops, c.connect(t, ct, true))
		out = append(out, ct)
	}
	return out, func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// connect connects one subscriber through the load balancer with the
// client its protocol version and QoS call for; fresh subscribes.
func (c *durableCluster) connect(t *testing.T, ct *counter, fresh bool) func() {
	v3 := strings.HasPrefix(ct.id, "v3-")
	switch {
	case ct.qos == 2 && v3:
		return subscribeQoS2(t, c.lbAddr, ct, 4)
	case ct.qos == 2:
		return subscribeQoS2(t, c.lbAddr, ct, 5)
	case v3:
		return subscribeV3(t, c.lbAddr, ct, fresh)
	default:
		return subscribeV5(t, c.lbAddr, ct, fresh)
	}
}

// resume connects the subscribers again, resuming their sessions.
func (c *durableCluster) resume(t *testing.T, subs []*counter) {
	for _, ct := range subs {
		c.connect(t, ct, false)
	}
}

// settle waits until every subscriber has every acknowledged message, or
// until nothing more arrived for quiet (at most 90 s). A JetStream group
// whose leader was killed elects another in 4 to 9 s, longer on a loaded
// machine, and a refused client retries a second later.
func settle(subs []*counter, acked []int) {
	const quiet = 20 * time.Second
	deadline := time.Now().Add(90 * time.Second)
	var last int64 = -1
	quietSince := time.Now()
	for time.Now().Before(deadline) {
		complete, sum := true, int64(0)
		for _, s := range subs {
			if lost, _ := s.tally(acked); lost > 0 {
				complete = false
			}
			sum += s.total.Load()
		}
		if complete {
			return
		}
		if sum != last {
			last, quietSince = sum, time.Now()
		} else if time.Since(quietSince) > quiet {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// loss is what a run lost and duplicated, over every subscriber.
type loss struct {
	lost, dupQoS1, dupQoS2, slowResume, notResumed int
	resumeMax                                      time.Duration // longest time from the kill to a resumed session
}

func measure(t *testing.T, subs []*counter, acked []int, killed time.Time, affected map[string]bool) loss {
	var l loss
	for _, s := range subs {
		lost, dups := s.tally(acked)
		if s.died.Load() {
			t.Errorf("%s: the client process died during the run (see its traceback above)", s.id)
		}
		l.lost += lost
		if s.qos == 1 {
			l.dupQoS1 += dups
		} else {
			l.dupQoS2 += dups
		}
		if lost > 0 || dups > 0 {
			dup, missing := s.twice(acked)
			t.Logf("%s (moved %v): lost %d %v, duplicates %d %v", s.id, affected[s.id], lost, missing, dups, dup)
		}
		if !affected[s.id] {
			continue
		}
		at, present := s.reconnectedAfter(killed)
		if !at.IsZero() {
			l.resumeMax = max(l.resumeMax, at.Sub(killed))
			t.Logf("%s resumed after %s", s.id, at.Sub(killed).Round(time.Millisecond))
		}
		switch {
		case at.IsZero():
			l.notResumed++
		case at.Sub(killed) > 10*time.Second:
			l.slowResume++
		case !present:
			l.notResumed++
		}
	}
	return l
}

// affectedBy returns the subscribers whose connection dropped after t.
func affectedBy(subs []*counter, t time.Time) map[string]bool {
	out := map[string]bool{}
	for _, s := range subs {
		if at, _ := s.reconnectedAfter(t); !at.IsZero() {
			out[s.id] = true
		}
	}
	return out
}

const (
	durableMessages = 5000
	durableInterval = 2 * time.Millisecond // 500 messages/s at most: each waits for its PUBCOMP
	durableKillAt   = 200                  // the steady publisher's message after which the node is killed
	durableAfter    = 15 * time.Second     // publishing goes on this long after the kill: past the 10 s resume bound
	inflightWindow  = 100                  // QoS 1 copies a subscriber may get twice after a crash
)

// runSubscriberNodeKill publishes numbered QoS 2 messages from a node that
// holds no subscriber of interest, kill -9s the node holding the most
// subscribers after durableKillAt of them, and publishes on for
// durableAfter (at most durableMessages in all): by time, not by count, so
// that a slow machine (the race detector, a busy CI) publishes through the
// whole reconnection without taking minutes to get there.
func runSubscriberNodeKill(t *testing.T, durability string) (loss, int) {
	c := startDurableCluster(t, durability)
	subs, _ := c.subscribers(t, "sk")
	victim := c.busiest()
	var pubNode *nodeProc
	for _, p := range c.nodes {
		if p != victim {
			pubNode = p
			break
		}
	}
	t.Logf("%s: kill -9 %s (%d connections) while publishing on %s", durability, victim.name, victim.connections(), pubNode.name)
	pub := publisherV5(t, pubNode.tcp, "sk-publisher")
	// Around the kill, a second publisher sends a burst of QoS 2 messages
	// from 8 goroutines at once: stored in queue batches, some in flight
	// to the killed node's sessions when it dies.
	burst := publisherV5(t, pubNode.tcp, "sk-burst")
	var burstAcked []int
	burstDone := make(chan struct{})
	var killed time.Time
	acked := publish(pub, 2, 0, durableMessages, durableInterval, func(i int) bool {
		switch i {
		case durableKillAt - 50:
			go func() {
				defer close(burstDone)
				burstAcked = publishBurst(burst, 2, burstFrom, burstFrom+600, 8)
			}()
		case durableKillAt:
			killed = time.Now()
			victim.kill()
		}
		return killed.IsZero() || time.Since(killed) < durableAfter
	})
	<-burstDone
	acked = append(acked, burstAcked...)
	settle(subs, acked)
	affected := affectedBy(subs, killed)
	l := measure(t, subs, acked, killed, affected)
	if durability == "replicated" && (l.lost > 0 || l.dupQoS2 > 0 || l.slowResume > 0) {
		c.logWarnings(t)
	}
	return l, len(affected)
}

// runPublisherNodeKill disconnects the 20 persistent subscribers (their
// sessions stay on their nodes), publishes QoS 1 messages to the node that
// holds the most sessions — 300 one at a time, then 900 from 16 goroutines
// at once, stored in queue batches — kill -9s it right after the last
// PUBACK, and resumes the sessions through the load balancer.
func runPublisherNodeKill(t *testing.T, durability string) loss {
	c := startDurableCluster(t, durability)
	subs, disconnect := c.subscribers(t, "pk")
	victim := c.busiest()
	disconnect()
	pub := publisherV5(t, victim.tcp, "pk-publisher")
	acked := publish(pub, 1, 0, 300, time.Millisecond, nil)
	p0, m0 := victim.metric("mqlb_node_queue_publishes_total{"), victim.metric("mqlb_node_queue_messages_total{")
	acked = append(acked, publishBurst(pub, 1, 300, 1200, 16)...)
	if durability == "replicated" {
		p, m := victim.metric("mqlb_node_queue_publishes_total{")-p0, victim.metric("mqlb_node_queue_messages_total{")-m0
		t.Logf("burst: %d publishes stored in %d queue stream messages", p, m)
		if m >= p {
			t.Errorf("the burst was not batched: %d publishes in %d stream messages", p, m)
		}
	}
	killed := time.Now()
	victim.kill()
	c.resume(t, subs)
	settle(subs, acked)
	return measure(t, subs, acked, killed, map[string]bool{})
}

// TestDurableMemoryLosesMessages documents today's behaviour with
// sessions.durability memory: messages queued or in flight on a node that
// is killed are lost. It proves the replicated test below can fail.
func TestDurableMemoryLosesMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	l, affected := runSubscriberNodeKill(t, "memory")
	t.Logf("memory: %d subscribers moved; lost %d, QoS 1 duplicates %d, QoS 2 duplicates %d", affected, l.lost, l.dupQoS1, l.dupQoS2)
	if affected == 0 {
		t.Fatal("no subscriber was on the killed node")
	}
	if l.lost == 0 {
		t.Error("memory durability lost nothing: the test cannot tell replicated from memory")
	}
}

// TestDurableSubscriberNodeKilled: kill -9 of the node holding the most
// subscribers loses no acknowledged message, delivers no QoS 2 message
// twice, and every moved client resumes its session within 10 s. QoS 1
// duplicates are allowed for messages in flight at the crash: at most the
// window per moved session.
func TestDurableSubscriberNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	l, affected := runSubscriberNodeKill(t, "replicated")
	t.Logf("replicated: %d subscribers moved, resumed within %s; lost %d, QoS 1 duplicates %d, QoS 2 duplicates %d",
		affected, l.resumeMax.Round(time.Millisecond), l.lost, l.dupQoS1, l.dupQoS2)
	if affected == 0 {
		t.Fatal("no subscriber was on the killed node")
	}
	if l.lost != 0 || l.dupQoS2 != 0 || l.dupQoS1 > inflightWindow*affected {
		t.Errorf("lost %d (want 0), QoS 2 duplicates %d (want 0), QoS 1 duplicates %d (want <= %d)",
			l.lost, l.dupQoS2, l.dupQoS1, inflightWindow*affected)
	}
	if l.slowResume+l.notResumed > 0 {
		t.Errorf("%d clients resumed after more than 10 s, %d did not resume their session", l.slowResume, l.notResumed)
	}
}

// TestDurablePublisherNodeKilled: a PUBACK means stored; killing the node
// right after loses none of those messages.
func TestDurablePublisherNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	l := runPublisherNodeKill(t, "replicated")
	// Published at QoS 1: every copy is QoS 1, duplicates allowed.
	t.Logf("replicated, publisher's node killed: lost %d, duplicates %d", l.lost, l.dupQoS1+l.dupQoS2)
	if l.lost != 0 {
		t.Errorf("lost %d (want 0)", l.lost)
	}
}
