package session

import (
	"bytes"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/node/meshwire"
)

// noMesh is a mesh with no other nodes.
type noMesh struct{}

func (noMesh) Subscribe(string, string) bool { return false }
func (noMesh) Unsubscribe(string, string)    {}
func (noMesh) SyncInterest()                 {}
func (noMesh) Control() *nats.Conn           { return nil }

// queueHook records queue order as the node's hook does (OnQosPublish).
type queueHook struct {
	mqtt.HookBase
	s *Tracker
}

func (h *queueHook) ID() string { return "queue" }
func (h *queueHook) Provides(b byte) bool {
	return bytes.IndexByte([]byte{mqtt.OnQosPublish}, b) >= 0
}
func (h *queueHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	h.s.Queued(cl, pk)
}

// testTracker returns a tracker over a mochi server without listeners.
func testTracker(t *testing.T, opts ...func(*Env)) (*Tracker, *mqtt.Server) {
	t.Helper()
	b := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	env := Env{Broker: b, Mesh: noMesh{}, Log: slog.New(slog.DiscardHandler),
		Warn: func(string, ...any) {}, Drop: func(string, int) {}, TookOver: func(string) {}}
	for _, o := range opts {
		o(&env)
	}
	s, _ := New(env)
	for _, h := range []mqtt.Hook{new(auth.AllowHook), &queueHook{s: s}} {
		if err := b.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	return s, b
}

// TestTakeoverKeepsWhatArrivesMeanwhile drives the takeover merge directly:
// messages a placeholder kept while the old owner answered are appended
// after the handed-over ones, without those the old owner already had.
func TestTakeoverKeepsWhatArrivesMeanwhile(t *testing.T) {
	s, b := testTracker(t)
	rec := &Record{Client: "merge", Version: 5, Subs: []subRecord{{Filter: "merge/t", QoS: 1}}}
	hold := s.hold("merge", rec)
	pub := b.NewClient(nil, "local", "\x00pub", true)
	for i, p := range []string{"m1", "m2", "m3"} {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1,
			TopicName: "merge/t", Payload: []byte(p)}
		meshwire.SetTag(&pk, meshwire.Tag{ID: meshwire.MsgID{Origin: "here", Seq: uint64(i + 1)}})
		if err := b.InjectPacket(pub, pk); err != nil {
			t.Fatal(err)
		}
	}
	if k := hold.State.Inflight.Len(); k != 3 {
		t.Fatalf("placeholder keeps %d, want 3", k)
	}
	var m1 packets.Packet
	for _, pk := range hold.State.Inflight.GetAll(false) {
		if string(pk.Payload) == "m1" {
			m1 = pk
		}
	}
	env := func(payload string) []byte {
		return meshwire.AppendEnvelope(nil, &meshwire.Envelope{Topic: "merge/t", QoS: 1, Payload: []byte(payload)})
	}
	h := &handover{Found: true, Version: 5, Subs: rec.Subs, Msgs: []handoverMsg{
		{Type: packets.Publish, ID: 7, Tag: meshwire.MsgID{Origin: "elsewhere", Seq: 1}, Env: env("old")},
		{Type: packets.Publish, ID: 9, Tag: meshwire.IDOf(&m1), Env: env("m1")}, // the old owner had m1 too
	}}
	s.install("merge", h, hold)
	if _, ok := b.Clients.Get(hold.ID); ok {
		t.Error("placeholder still registered")
	}
	cl, ok := b.Clients.Get("merge")
	if !ok || !cl.Closed() {
		t.Fatal("no disconnected session installed")
	}
	if got := resendOrder(cl); !slices.Equal(got, []string{"old", "m1", "m2", "m3"}) {
		t.Errorf("installed session resends %q, want the handed-over messages, then those kept meanwhile, once each", got)
	}
}

// resendOrder returns the payloads of cl's inflight messages in the order
// mochi resends them when the session resumes (by Created second).
func resendOrder(cl *mqtt.Client) []string {
	pks := cl.State.Inflight.GetAll(false)
	slices.SortStableFunc(pks, func(a, b packets.Packet) int { return int(a.Created - b.Created) })
	var out []string
	for _, pk := range pks {
		out = append(out, string(pk.Payload))
	}
	return out
}

// dropCount counts the drops a tracker reports, by reason.
type dropCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *dropCount) drop(reason string, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = map[string]int{}
	}
	d.n[reason] += n
}

func (d *dropCount) of(reason string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[reason]
}

// publishN injects QoS 1 publishes "<prefix><i>" to topic, as the mesh
// does, each with its own message id.
func publishN(t *testing.T, b *mqtt.Server, topic, prefix string, n int) {
	t.Helper()
	pub := b.NewClient(nil, "local", "\x00pub", true)
	for i := range n {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1,
			TopicName: topic, Payload: []byte(prefix + strconv.Itoa(i))}
		meshwire.SetTag(&pk, meshwire.Tag{ID: meshwire.MsgID{Origin: "there", Seq: uint64(i + 1)}})
		if err := b.InjectPacket(pub, pk); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHoldNotBoundByMaxOffline: a takeover's placeholder is not an offline
// session. max_offline_messages applied to it dropped, and counted as
// offline_queue_full, messages that the session's queue delivered anyway
// (replicated durability: install skips them) or that a connecting client
// then missed (memory durability). It keeps them all, and the installed
// session gets them all; a real offline session is still bounded.
func TestHoldNotBoundByMaxOffline(t *testing.T) {
	var drops dropCount
	s, b := testTracker(t, func(e *Env) { e.MaxOffline, e.Drop = 5, drops.drop })
	rec := &Record{Client: "held", Version: 5, Subs: []subRecord{{Filter: "held/t", QoS: 1}}}
	hold := s.hold("held", rec)
	if !hold.Closed() {
		t.Fatal("placeholder not Closed: the limit would not apply to it anyway")
	}
	publishN(t, b, "held/t", "h", 12)
	if k, d := hold.State.Inflight.Len(), drops.of("offline_queue_full"); k != 12 || d != 0 {
		t.Errorf("placeholder keeps %d with %d counted offline_queue_full, want all 12 kept, none dropped", k, d)
	}
	s.install("held", &handover{Found: true, Version: 5, Subs: rec.Subs}, hold)
	cl, ok := b.Clients.Get("held")
	if !ok {
		t.Fatal("no session installed")
	}
	want := []string{}
	for i := range 12 {
		want = append(want, "h"+strconv.Itoa(i))
	}
	if got := resendOrder(cl); !slices.Equal(got, want) {
		t.Errorf("installed session resends %q, want %q", got, want)
	}

	// An offline session of a client id: still max_offline_messages.
	s.install("offline", &handover{Found: true, Version: 5, Subs: []subRecord{{Filter: "offline/t", QoS: 1}}}, nil)
	off, _ := b.Clients.Get("offline")
	publishN(t, b, "offline/t", "o", 12)
	var got []string
	for _, pk := range s.Queue(off) {
		got = append(got, string(pk.Payload))
	}
	if !slices.Equal(got, []string{"o7", "o8", "o9", "o10", "o11"}) {
		t.Errorf("offline session keeps %q, want the newest 5", got)
	}
	if d := drops.of("offline_queue_full"); d != 7 {
		t.Errorf("offline_queue_full counted %d, want the 7 the offline session dropped", d)
	}
}
