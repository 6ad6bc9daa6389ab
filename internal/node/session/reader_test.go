package session

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/node/store"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestReadQueueFromReplicaLackingMessages: a replica that lacks messages
// the leader holds — earlier ones while it has later ones, as a replica
// joined by a scale-up was seen to — makes a direct get skip them or answer
// nothing; readQueue delivers them from the leader. The replica here is a
// mirror of the queue stream that started after its first message and
// answers the stream's direct gets (mirror_direct), in one queue group with
// the stream itself, as replicas are: which of the two answers is random,
// so each read is repeated.
func TestReadQueueFromReplicaLackingMessages(t *testing.T) {
	nc := testutil.ConnectNATS(t, testutil.StartNATS(t))
	ctx := t.Context()
	st, err := store.Open(ctx, nc, store.Plan{Cluster: "rq", Replicas: 1, QueueAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	queue := st.Queue.CachedInfo().Config.Name
	// The anchor: an interest stream keeps only what a consumer wants.
	if _, err := st.Queue.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "anchor",
		AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "mqlb.rq.q.>"}); err != nil {
		t.Fatal(err)
	}
	for i, subject := range []string{"mqlb.rq.q.a", "mqlb.rq.q.b", "mqlb.rq.q.b"} {
		msg := nats.NewMsg(subject)
		msg.Header.Set(fromHeader, "pub")
		msg.Data = []byte{byte('1' + i)}
		if _, err := st.JS.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	mirror, err := st.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "replica", Storage: jetstream.MemoryStorage,
		Mirror: &jetstream.StreamSource{Name: queue, OptStartSeq: 2}, MirrorDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		info, err := mirror.Info(ctx)
		return err == nil && info.State.LastSeq == 3 && info.State.Msgs == 2
	}, "the mirror holds messages 2 and 3")

	var warned int
	d := newDurable(Env{Warn: func(string, ...any) { warned++ }})
	const reads = 40
	// The replica's answers alone: without readQueue's check, a read from
	// message 1 on skips it (or, on subject a, finds nothing).
	skipped, empty := 0, 0
	for range reads {
		if msgs, _, err := d.fetch(ctx, st, "mqlb.rq.q.>", 1, 10); err != nil {
			t.Fatal(err)
		} else if msgs[0].seq != 1 {
			skipped++
		}
		if msgs, _, err := d.fetch(ctx, st, "mqlb.rq.q.a", 1, 10); err != nil {
			t.Fatal(err)
		} else if len(msgs) == 0 {
			empty++
		}
	}
	if skipped == 0 || empty == 0 {
		t.Fatalf("the mirror never answered (%d reads skipped message 1, %d found nothing): the test shows nothing", skipped, empty)
	}

	for range reads {
		msgs, more, err := d.readQueue(ctx, st, "mqlb.rq.q.>", 1, 10, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 || msgs[0].seq != 1 || string(msgs[0].data) != "1" || msgs[0].from != "pub" || msgs[0].subject != "mqlb.rq.q.a" {
			t.Fatalf("read from 1: %+v, want message 1 first", msgs)
		}
		if msgs[0].leader && (len(msgs) != 1 || !more) {
			t.Fatalf("from the leader: %d messages, more %v; want the one, and more to read", len(msgs), more)
		}
		// Expected (woken for it): an empty answer is checked too.
		msgs, _, err = d.readQueue(ctx, st, "mqlb.rq.q.a", 1, 10, true)
		if err != nil || len(msgs) != 1 || msgs[0].seq != 1 {
			t.Fatalf("expected read on a: %+v, %v; want message 1", msgs, err)
		}
		// The replica is complete from 2 on: reads from there are its own.
		msgs, _, err = d.readQueue(ctx, st, "mqlb.rq.q.b", 2, 10, true)
		if err != nil || len(msgs) != 2 || msgs[0].seq != 2 || msgs[0].leader {
			t.Fatalf("read on b from 2: %+v, %v; want messages 2 and 3 from the replica", msgs, err)
		}
	}
	if d.ReplicaMisses() == 0 || warned == 0 {
		t.Errorf("misses counted %d, warned %d: want both", d.ReplicaMisses(), warned)
	}
	// Nothing after the last message: the leader confirms an expected empty read.
	if msgs, _, err := d.readQueue(ctx, st, "mqlb.rq.q.>", 4, 10, true); err != nil || len(msgs) != 0 {
		t.Errorf("read past the end: %+v, %v; want nothing", msgs, err)
	}
}
