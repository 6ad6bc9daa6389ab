package session

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/node/store"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestCoalescedWakeReadsPastLaggingReplica: two publishes for a connected
// session are announced before its reader takes the wake (the second
// poke finds the slot full), and the replica that answers the read has the
// first but not yet the second. The read found something, so the reader
// used to stop there: the second waited for readPoll (5 s) or the next
// publish. It must come at once.
//
// The lagging replica is a mirror of the queue stream that answers its
// direct gets (mirror_direct) and holds only topics under w/a: the second
// publish (w/b) is never in it. Which of the two answers a read is random,
// so the race is played in rounds. To make both pokes land before the take,
// the reader is held in the delivery of a gate message (its ACL check) while
// the two publishes are stored and announced.
func TestCoalescedWakeReadsPastLaggingReplica(t *testing.T) {
	nc := testutil.ConnectNATS(t, testutil.StartNATS(t))
	ctx, cancel := context.WithCancel(t.Context())
	st, err := store.Open(ctx, nc, store.Plan{Cluster: "wk", Replicas: 1, QueueAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	gated, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	b := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	_, d := New(Env{Broker: b, Store: func() (*store.Store, error) { return st, nil }, Mesh: noMesh{},
		Log: slog.New(slog.DiscardHandler), Warn: func(string, ...any) {}, Drop: func(string, int) {},
		TookOver: func(string) {}, Ctx: ctx, WG: &wg, Cluster: "wk", Timeout: 2 * time.Second,
		MaxExpiry: time.Hour, Replicated: true,
		MayRead: func(_ *mqtt.Client, topic string) bool {
			if topic == "w/a/gate" { // hold the reader in this delivery
				select {
				case gated <- struct{}{}:
				case <-ctx.Done():
					return true
				}
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return true
		}})

	queue := st.Queue.CachedInfo().Config.Name
	mirror, err := st.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "replica", Storage: jetstream.MemoryStorage,
		Mirror: &jetstream.StreamSource{Name: queue, FilterSubject: d.subj.QueueFilter("w/a/#")}, MirrorDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	mirrored := func(n uint64) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() bool {
			info, err := mirror.Info(ctx)
			return err == nil && info.State.Msgs == n
		}, "the mirror holds %d messages", n)
	}

	if !d.sync(ctx, "sub", map[string]packets.Subscription{"w/#": {Filter: "w/#", Qos: 1}}, true) {
		t.Fatal("the session's anchor not written")
	}
	ds := d.get("sub")
	cl := b.NewClient(nil, "test", "sub", false)
	cl.Properties.ProtocolVersion = 5
	d.Start(cl)

	var seq uint64
	put := func(topic, payload string) {
		t.Helper()
		seq++
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: topic,
			Payload: []byte(payload)}
		if err := d.Store(ctx, "pub", pk, meshwire.MsgID{Origin: "there", Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	delivered := func(payload string) bool {
		for _, pk := range cl.State.Inflight.GetAll(false) {
			if string(pk.Payload) == payload {
				return true
			}
		}
		return false
	}

	const rounds = 25 // 3 deliveries each, under the session's window (never acknowledged here)
	for i := range rounds {
		r := strconv.Itoa(i)
		put("w/a/gate", "gate"+r)
		mirrored(uint64(2*i + 1)) // the mirror's answer has the gate too
		ds.poke()
		select {
		case <-gated:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the reader did not deliver the gate message", i)
		}
		// The reader is in the gate's delivery: it takes no wake meanwhile.
		put("w/a/p1", "p1-"+r)
		put("w/b/p2", "p2-"+r)
		mirrored(uint64(2*i + 2)) // p1 in the mirror; p2 never
		// As covers does for each publish (it would wait here for ds.mu,
		// which the held delivery holds).
		ds.poke()
		ds.poke()
		release <- struct{}{}
		for _, p := range []string{"gate" + r, "p1-" + r, "p2-" + r} {
			if !testutil.WaitFor(time.Second, func() bool { return delivered(p) }) {
				t.Fatalf("round %d: %s not delivered within 1s (the reader stopped at a replica's answer that lacked it)", i, p)
			}
		}
	}
	// The premise: the mirror does answer some reads, with p1 and not p2.
	lacking := 0
	for range 40 {
		msgs, _, err := d.fetch(ctx, st, d.subj.QueueFilter("w/#"), 3*rounds-1, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 {
			lacking++
		}
	}
	if lacking == 0 {
		t.Fatal("the mirror never answered a read: the test shows nothing")
	}
}

// TestPokeNotesCoalescedWake: a poke that finds the wake slot full marks
// the wake as standing for more than one publish; the reader's swap
// clears the mark.
func TestPokeNotesCoalescedWake(t *testing.T) {
	ds := &dsession{wake: make(chan struct{}, 1)}
	ds.poke()
	<-ds.wake
	if ds.took() {
		t.Fatal("a wake for one publish taken as coalesced")
	}
	ds.poke()
	ds.poke()
	ds.poke()
	<-ds.wake
	if !ds.took() {
		t.Fatal("a wake for three publishes not taken as coalesced")
	}
	select {
	case <-ds.wake:
		t.Fatal("a second wake left for publishes the first stood for")
	default:
	}
	if ds.took() {
		t.Fatal("the mark outlived its swap")
	}
}
