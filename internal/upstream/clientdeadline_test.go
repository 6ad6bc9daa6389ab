package upstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestClientDeadlineIsNotTheServers: a CONNACK wait cut short by the
// client's own connect_timeout (here after it queued under
// max_connect_rate, as in a reconnect storm) is not the server's failure:
// with fall 1 a single charge would take the healthy broker down. The
// client is answered busy, as one whose turn came too late. A client with
// less than minAttempt left at its turn is not dialled at all.
func TestClientDeadlineIsNotTheServers(t *testing.T) {
	b := testutil.StartMochi(t, testutil.WithAuthHook(&testutil.SlowConnack{D: 1500 * time.Millisecond}))
	set, err := Build(parse(t, "      - { name: slow, address: \""+b.Addr+"\" }\n",
		"    max_connect_rate: 2\n    connack_timeout: 3s\n    health_check: { type: none, fall: 1, interval: 1h }\n"), nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	u := set.Get("u")
	s := u.Server("slow")
	interval := s.pace.Load().interval // about 515 ms

	// The first client takes the turn at once and is served.
	var first Lease
	conn, _, err := u.Connect(context.Background(), &first, connectOf("fast-0"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// The next turn comes in about 515 ms: a client with 250 ms more than
	// that is dialled with about 250 ms left, and the slow CONNACK runs
	// past its deadline.
	start := time.Now()
	var l Lease
	_, _, err = u.Connect(Until(context.Background(), start.Add(interval+250*time.Millisecond)), &l, connectOf("slow-1"))
	if !errors.Is(err, ErrBusy) || !errors.Is(err, errClientTimeout) {
		t.Errorf("Connect with the client's deadline cutting the CONNACK wait: %v; want ErrBusy (the client's connect_timeout ran out)", err)
	}
	if took := time.Since(start); took > interval+time.Second {
		t.Errorf("Connect took %v; want about the client's deadline (%v)", took, interval+250*time.Millisecond)
	}
	if s.Failures() != 0 || !s.Healthy() {
		t.Errorf("slow: failures %d healthy %v after a CONNACK wait the client's deadline cut short; want 0, true", s.Failures(), s.Healthy())
	}

	// A client whose turn would leave it less than minAttempt is refused
	// without a dial.
	time.Sleep(interval) // the pacer is free again
	connects := b.ConnectCount()
	var second Lease
	conn2, _, err := u.Connect(context.Background(), &second, connectOf("fast-2"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	start = time.Now()
	var third Lease
	_, _, err = u.Connect(Until(context.Background(), start.Add(interval+minAttempt/2)), &third, connectOf("fast-3"))
	if !errors.Is(err, ErrBusy) {
		t.Errorf("Connect whose turn leaves less than %v: %v; want ErrBusy", minAttempt, err)
	}
	if got := b.ConnectCount() - connects; got != 1 {
		t.Errorf("the broker saw %d CONNECTs; want 1 (fast-2; fast-3 is not dialled)", got)
	}
	if s.Failures() != 0 || !s.Healthy() {
		t.Errorf("slow: failures %d healthy %v; want 0, true", s.Failures(), s.Healthy())
	}
}
