package session

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/node/store"
	"github.com/mqlb/mqlb/internal/testutil"
)

// establishHook drives the tracker as the node's hook does on connect and
// disconnect, and reports each client id that reaches OnSessionEstablish.
type establishHook struct {
	mqtt.HookBase
	s     *Tracker
	enter chan string
}

func (h *establishHook) ID() string { return "test-establish" }
func (h *establishHook) Provides(b byte) bool {
	return b == mqtt.OnSessionEstablish || b == mqtt.OnSessionEstablished || b == mqtt.OnDisconnect
}
func (h *establishHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h.enter <- cl.ID
	h.s.Establish(cl, pk)
}
func (h *establishHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) { h.s.Connected(cl) }
func (h *establishHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.s.Disconnected(cl, expire)
}

// adoptionTracker returns a tracker of node "n1" (instance "run2") over a
// JetStream store and a mochi server on TCP, driven by establishHook, and
// the record of a persistent session an earlier run of n1 held, written.
func adoptionTracker(t *testing.T) (*Tracker, *mqtt.Server, *establishHook, string, *Record, uint64) {
	t.Helper()
	nc := testutil.ConnectNATS(t, testutil.StartNATS(t))
	ctx := t.Context()
	st, err := store.Open(ctx, nc, store.Plan{Cluster: "adopt", Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	b := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	s, _ := New(Env{Broker: b, Store: func() (*store.Store, error) { return st, nil }, Mesh: noMesh{},
		Log: slog.New(slog.DiscardHandler), Warn: func(string, ...any) {}, Drop: func(string, int) {},
		TookOver: func(string) {}, Ctx: ctx, WG: new(sync.WaitGroup),
		Node: "n1", Instance: "run2", Cluster: "adopt", Timeout: 2 * time.Second})
	h := &establishHook{s: s, enter: make(chan string, 4)}
	for _, hk := range []mqtt.Hook{new(auth.AllowHook), h} {
		if err := b.AddHook(hk, nil); err != nil {
			t.Fatal(err)
		}
	}
	addr := serveTCP(t, b)

	now := time.Now().Unix()
	rec := &Record{Client: "adoptee", Node: "n1", Instance: "run1", Expiry: 600, Version: 5, Since: now - 10,
		Gone: now - 5, Subs: []subRecord{{Filter: "adopt/t", QoS: 1}}}
	rev, err := s.reg.put(ctx, rec, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s, b, h, addr, rec, rev
}

// TestAdoptionAndConnectionExclude: a client connects while its session
// is being adopted (its record written, the detached client not yet in
// mochi's list). Its connection waits for the adoption, then resumes the
// adopted session: mochi's list holds the connection, and a message to the
// session's subscription reaches it. Without the exclusion the connection
// was established in between, and the adoption's Clients.Add replaced it in
// mochi's list: still connected, it got nothing.
func TestAdoptionAndConnectionExclude(t *testing.T) {
	s, b, h, addr, rec, rev := adoptionTracker(t)
	ctx := t.Context()
	written, release := make(chan struct{}), make(chan struct{})
	adoptWritten = func(id string) {
		close(written)
		<-release
	}
	t.Cleanup(func() { adoptWritten = nil })
	adopted := make(chan bool, 1)
	go func() { adopted <- s.adoptRecord(ctx, rec, rev) }()
	await(t, written, "the adoption wrote the record")

	got := make(chan string, 4)
	connected := make(chan error, 1)
	var c *paho.Client
	go func() {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			connected <- err
			return
		}
		c = paho.NewClient(paho.ClientConfig{ClientID: "adoptee", Conn: conn, OnClientError: func(error) {},
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
				got <- string(p.Packet.Payload)
				return true, nil
			}}})
		cctx, cancel := context.WithTimeout(ctx, willWait)
		defer cancel()
		expiry := uint32(600)
		_, err = c.Connect(cctx, &paho.Connect{ClientID: "adoptee", KeepAlive: 30,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
		connected <- err
	}()
	select {
	case <-h.enter:
	case <-time.After(willWait):
		t.Fatal("the client's CONNECT did not reach OnSessionEstablish")
	}
	// The connection either waits for the adoption, or (without the
	// exclusion) is established while the adoption is held.
	var connErr error
	done := false
	testutil.Eventually(t, willWait, func() bool {
		select {
		case connErr = <-connected:
			done = true
			return true
		default:
			return s.adoptWaits.Load() > 0
		}
	}, "the connection established or waiting for the adoption")
	close(release)
	if ok := <-adopted; !ok {
		t.Fatal("the adoption did not happen")
	}
	if !done {
		select {
		case connErr = <-connected:
		case <-time.After(willWait):
			t.Fatal("the connection did not complete after the adoption")
		}
	}
	if connErr != nil {
		t.Fatalf("connect: %v", connErr)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })

	if cl, ok := b.Clients.Get("adoptee"); !ok || cl.Net.Conn == nil {
		t.Fatal("mochi's list holds the adoption's detached client for the id, not its connection")
	}
	pub := b.NewClient(nil, "local", "\x00pub", true)
	if err := b.InjectPacket(pub, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		PacketID: 1, TopicName: "adopt/t", Payload: []byte("to the adopted session")}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "to the adopted session" {
			t.Fatalf("received %q", p)
		}
	case <-time.After(willWait):
		t.Fatal("the connected client got nothing published to its session's subscription")
	}
}

// TestAdoptionWaitsOutConnection: while a connection of the id is being
// established (between Establish and mochi's list), no adoption of its
// session starts; once it is in the list, mochi's list itself says so; an
// adoption goes ahead only with neither.
func TestAdoptionWaitsOutConnection(t *testing.T) {
	s, b, _, _, rec, rev := adoptionTracker(t)
	cl := b.NewClient(nil, "test", "adoptee", false)
	s.connectingAdd(cl)
	if s.adoptRecord(t.Context(), rec, rev) {
		t.Fatal("adopted the session of a client being established")
	}
	s.Connected(cl)
	b.Clients.Add(cl)
	if s.adoptRecord(t.Context(), rec, rev) {
		t.Fatal("adopted the session of a client in mochi's list")
	}
	b.Clients.Delete(cl.ID)
	if !s.adoptRecord(t.Context(), rec, rev) {
		t.Fatal("no adoption with no connection of the id")
	}
}
