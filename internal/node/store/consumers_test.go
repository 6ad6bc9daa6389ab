package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestQueueTakesAConsumerPerSession: every persistent session holds a
// consumer of the queue stream (its anchor) for as long as it lives, so the
// stream must take more consumers than the server's default_max_consumers
// (1,000): beyond them every new persistent session failed its store write
// (err_code 10026) and the node's store went into its cooldown for
// everyone. Both for a stream Open creates and for one an earlier version
// created without a limit, which Open updates.
func TestQueueTakesAConsumerPerSession(t *testing.T) {
	const sessions = 1100 // past nats-server's default of 1,000
	for _, earlier := range []bool{false, true} {
		t.Run(fmt.Sprintf("earlier stream %v", earlier), func(t *testing.T) {
			nc := testutil.ConnectNATS(t, testutil.StartNATS(t))
			ctx := t.Context()
			plan := Plan{Cluster: "mc", Replicas: 1, QueueAge: time.Hour}
			if earlier {
				js, err := jetstream.New(nc)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: plan.bucket("queue"),
					Subjects: []string{"mqlb.mc.q.>"}, Retention: jetstream.InterestPolicy, AllowDirect: true}); err != nil {
					t.Fatal(err)
				}
			}
			st, err := Open(ctx, nc, plan)
			if err != nil {
				t.Fatal(err)
			}
			for i := range sessions {
				_, err := st.Queue.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: fmt.Sprintf("s%d", i),
					AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: fmt.Sprintf("mqlb.mc.q.%d", i), MemoryStorage: true})
				if err != nil {
					t.Fatalf("consumer %d of %d: %v", i+1, sessions, err)
				}
			}
		})
	}
}

// TestRefusalIsNoStoreFailure: an error the store answers for one request
// (a 4xx JetStream API error, here a consumer to start at a sequence it
// does not name) does not put the store into its cooldown, which would refuse
// every client of the node for a second; a failure of the store does.
func TestRefusalIsNoStoreFailure(t *testing.T) {
	nc := testutil.ConnectNATS(t, testutil.StartNATS(t))
	ctx := t.Context()
	st, err := Open(ctx, nc, Plan{Cluster: "rf", Replicas: 1, QueueAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Queue.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "nostart",
		AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverByStartSequencePolicy})
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != 400 {
		t.Fatalf("a consumer without its start sequence: %v, want a 400 API error", err)
	}
	if st.Note(err); !st.Usable() {
		t.Errorf("store in cooldown after the refusal %v", err)
	}
	nc.Close()
	_, err = st.Sessions.Get(ctx, "k")
	if st.Note(err); err == nil || st.Usable() {
		t.Errorf("store usable after the failure %v", err)
	}
}
