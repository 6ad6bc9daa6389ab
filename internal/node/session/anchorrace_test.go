package session

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/node/store"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestAnchorWriteNotUndoneByEarlierWrite: a session taken over from another
// node follows its queue unsynced (the reader writes the anchor, position),
// and its client subscribes at once (Resubscribed writes it too). The
// reader's write took the filters before the SUBSCRIBE changed them and
// was answered after the SUBSCRIBE's: it put the old filters back. covers
// then kept the live copy of a publish on the new subscription from the
// session, and the stream, which keeps a message only for a consumer whose
// filters want it, did not store it: lost (TestTakeoverQueuedACL in
// internal/node, about 1 run in 10).
//
// The reader's write is held after it took the filters (in Env.Store,
// which write calls next) while the SUBSCRIBE's runs.
func TestAnchorWriteNotUndoneByEarlierWrite(t *testing.T) {
	nc := testutil.ConnectNATS(t, testutil.StartNATS(t))
	ctx, cancel := context.WithCancel(t.Context())
	st, err := store.Open(ctx, nc, store.Plan{Cluster: "ar", Replicas: 1, QueueAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	var hold atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	b := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	_, d := New(Env{Broker: b, Mesh: noMesh{},
		Store: func() (*store.Store, error) {
			if hold.CompareAndSwap(true, false) {
				held <- struct{}{}
				<-release
			}
			return st, nil
		},
		Log: slog.New(slog.DiscardHandler), Warn: func(string, ...any) {}, Drop: func(string, int) {},
		TookOver: func(string) {}, Ctx: ctx, WG: &wg, Cluster: "ar", Timeout: 2 * time.Second,
		MaxExpiry: time.Hour, Replicated: true, MayRead: func(*mqtt.Client, string) bool { return true }})

	const id = "s"
	old := map[string]packets.Subscription{"a/#": {Filter: "a/#", Qos: 1}}
	if !d.sync(ctx, id, old, true) { // written by the node that had the session
		t.Fatal("the anchor not written")
	}
	d.sync(ctx, id, old, false) // taken over here: the reader writes it
	ds := d.get(id)

	hold.Store(true)
	readerDone := make(chan bool)
	go func() { readerDone <- d.write(ctx, ds) }() // the reader's (position)
	<-held                                         // it has the old filters

	subscribed := make(chan bool, 1)
	go func() {
		subs := map[string]packets.Subscription{"a/#": old["a/#"], "b/#": {Filter: "b/#", Qos: 1}}
		subscribed <- d.sync(ctx, id, subs, true) // the SUBSCRIBE's (Resubscribed)
	}()
	// Without the writes taking turns, the SUBSCRIBE's is done before the
	// reader's goes on; with them, it waits for the reader's.
	select {
	case ok := <-subscribed:
		subscribed <- ok
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	<-readerDone
	if !<-subscribed {
		t.Fatal("the SUBSCRIBE's write failed")
	}

	// The SUBACK is out: a publish on the new subscription.
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "b/x",
		Payload: []byte("after suback")}
	if err := d.Store(ctx, "pub", pk, meshwire.MsgID{Origin: "there", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if !d.covers(id, pk.TopicName) {
		t.Fatal("covers: the session would get the live copy (the test expects the queue to deliver it)")
	}
	cons, err := st.Queue.Consumer(ctx, ConsumerName(id))
	if err != nil {
		t.Fatal(err)
	}
	filters := cons.CachedInfo().Config.FilterSubjects
	info, err := st.Queue.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(filters, d.subj.QueueFilter("b/#")) || info.State.Msgs != 1 {
		t.Fatalf("anchor filters %v, stream holds %d messages: the publish on b/x is lost (no live copy, not stored)",
			filters, info.State.Msgs)
	}
}
