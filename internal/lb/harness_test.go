package lb

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// harness is a load balancer in front of in-process mochi brokers.
type harness struct {
	t       testing.TB
	lb      *LB
	brokers []*testutil.Broker
	addr    string // the "mqtt" listener
	admin   string
	file    string
	access  string // access log file
	cancel  context.CancelFunc
	done    chan error
}

// harnessOpts tweak the YAML the harness writes.
type harnessOpts struct {
	brokers   int
	upstream  string // extra keys under upstreams.brokers (indented 4 spaces)
	listeners string // extra listeners (indented 2 spaces, starting with "- ")
	top       string // extra top-level sections
	brokerOpt []testutil.BrokerOption
	servers   []string // server addresses to use instead of started brokers
	names     []string // server names (default b0, b1, ...)
}

const healthFast = `    health_check: { type: mqtt, interval: 100ms, timeout: 500ms, rise: 1, fall: 2 }
`

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	if o.brokers == 0 && o.servers == nil {
		o.brokers = 3
	}
	h := &harness{t: t}
	servers := o.servers
	for range o.brokers {
		b := testutil.StartMochi(t, o.brokerOpt...)
		h.brokers = append(h.brokers, b)
		servers = append(servers, b.Addr)
	}
	dir := t.TempDir()
	h.file, h.access = filepath.Join(dir, "mqlb.yaml"), filepath.Join(dir, "access.log")
	h.write(h.yaml(servers, o))
	cfg, err := config.Load(h.file)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := New(cfg, Options{File: h.file, Log: log})
	if err != nil {
		t.Fatalf("lb.New: %v", err)
	}
	h.lb = l
	h.addr, h.admin = l.ListenerAddr("mqtt"), l.AdminAddr()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- l.Run(ctx) }()
	t.Cleanup(h.stop)
	testutil.Eventually(t, 5*time.Second, l.Serving, "lb serving")
	return h
}

func (h *harness) yaml(servers []string, o harnessOpts) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listeners:\n  - { name: mqtt, address: \"127.0.0.1:0\", upstream: brokers }\n%s", o.listeners)
	fmt.Fprintf(&b, "upstreams:\n  brokers:\n%s", o.upstream)
	if !strings.Contains(o.upstream, "health_check") {
		b.WriteString(healthFast)
	}
	b.WriteString("    servers:\n")
	for i, s := range servers {
		name := fmt.Sprintf("b%d", i)
		if i < len(o.names) {
			name = o.names[i]
		}
		fmt.Fprintf(&b, "      - { name: %s, address: %q }\n", name, s)
	}
	if !strings.Contains(o.top, "admin:") {
		b.WriteString("admin: { address: \"127.0.0.1:0\" }\n")
	}
	if !strings.Contains(o.top, "limits:") {
		b.WriteString("limits: { connect_timeout: 2s, shutdown_grace: 5s }\n")
	}
	if !strings.Contains(o.top, "access_log:") {
		fmt.Fprintf(&b, "access_log: { path: %q }\n", h.access)
	}
	b.WriteString(o.top)
	return b.String()
}

func (h *harness) write(yaml string) {
	if err := os.WriteFile(h.file, []byte(yaml), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) stop() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(15 * time.Second):
		h.t.Error("load balancer did not stop")
	}
}

// brokerOf returns the index of the broker a client id is connected to, or -1.
func (h *harness) brokerOf(clientID string) int {
	for i, b := range h.brokers {
		if b.HasClient(clientID) {
			return i
		}
	}
	return -1
}

// waitIdle waits until the LB relays no connection.
func (h *harness) waitIdle() {
	h.t.Helper()
	testutil.Eventually(h.t, 5*time.Second, func() bool { return h.lb.Connections().Len() == 0 }, "LB idle")
}

// accessLog returns what the access log holds so far.
func (h *harness) accessLog() string {
	b, _ := os.ReadFile(h.access)
	return string(b)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// connectV5 connects a paho.golang (MQTT 5) client through addr.
func connectV5(t testing.TB, addr, clientID string, onMsg func(*paho.Publish)) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, nil, err
	}
	cfg := paho.ClientConfig{Conn: conn}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(p paho.PublishReceived) (bool, error) { onMsg(p.Packet); return true, nil },
		}
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true})
	if err != nil {
		conn.Close()
		return nil, ca, err
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

// connectV3 connects a paho.mqtt.golang (MQTT 3.1.1) client through addr.
func connectV3(t testing.TB, addr, clientID string) (mqtt3.Client, error) {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	c := mqtt3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

type balanceConn = balance.Conn

// roundTrip subscribes c to topic, publishes payload there (QoS 1) and fails
// the test unless got (c's received payloads) brings it back before ctx ends.
func roundTrip(t testing.TB, ctx context.Context, c *paho.Client, got <-chan string, topic, payload string) {
	t.Helper()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != payload {
			t.Fatalf("got %q on %s, want %q", p, topic, payload)
		}
	case <-ctx.Done():
		t.Fatalf("%q not received on %s", payload, topic)
	}
}
