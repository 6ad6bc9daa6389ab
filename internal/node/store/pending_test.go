package store

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestUnansweredWriteNotPendingForever: a write the stream never answers
// (its leader died with it) is given up after Plan.AckTimeout and leaves
// nats.go's table of pending writes. Without the timeout it stayed there
// for the life of the node: after 4,000 such writes, one election after
// another, every later write stalled and failed ("too many outstanding
// async published messages") and the node refused every QoS 1/2 publish.
// A subscriber that never replies stands in for the dead leader.
func TestUnansweredWriteNotPendingForever(t *testing.T) {
	nc := testutil.ConnectNATS(t, testutil.StartNATS(t))
	st, err := Open(t.Context(), nc, Plan{Cluster: "pw", Replicas: 1, AckTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.SubscribeSync("silent.leader"); err != nil { // takes the write, never answers
		t.Fatal(err)
	}
	fut, err := st.JS.PublishAsync("silent.leader", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-fut.Err():
		if !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			t.Errorf("unanswered write: %v, want ErrAsyncPublishTimeout", err)
		}
	case <-fut.Ok():
		t.Fatal("an unanswered write was acknowledged")
	case <-time.After(5 * time.Second):
		t.Fatal("an unanswered write was never given up")
	}
	if n := st.JS.PublishAsyncPending(); n != 0 {
		t.Errorf("%d writes still pending after their timeout", n)
	}
}
