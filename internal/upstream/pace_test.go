package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestPacerSpacing: concurrent waiters get no more turns than the rate
// allows, and those whose turn would come after their deadline are told so.
func TestPacerSpacing(t *testing.T) {
	p := newPacer(200) // about 5.2 ms apart
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	var mu sync.Mutex
	var grants []time.Time
	busy := 0
	var wg sync.WaitGroup
	for range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.wait(ctx)
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, ErrBusy) {
				busy++
			} else {
				grants = append(grants, time.Now())
			}
		}()
	}
	wg.Wait()
	limit := int(150*time.Millisecond/p.interval) + 1
	if busy == 0 || len(grants) < 10 || len(grants) > limit {
		t.Errorf("%d granted, %d busy in 150 ms at 200/s; want at most %d granted", len(grants), busy, limit)
	}
}

// TestPacerRefundAndRelease: a turn given back lets the next waiter go at
// once, not one interval after it; release sends every waiter away.
func TestPacerRefundAndRelease(t *testing.T) {
	p := newPacer(0.1) // about 10.3 s apart
	ctx := context.Background()
	a, err := p.wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan time.Time, 1)
	go func() {
		b, err := p.wait(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	testutil.Eventually(t, 5*time.Second, func() bool { return queued(p) == 1 }, "the second waiter queued")
	p.refund(a)
	if b := <-got; !b.Before(a.Add(p.interval)) {
		t.Errorf("after a refund the next turn came %v after the refunded one, want before the interval %v", b.Sub(a), p.interval)
	}

	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := p.wait(ctx)
			errs <- err
		}()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return queued(p) == 3 }, "3 waiters queued")
	p.release()
	for range 3 {
		if err := <-errs; !errors.Is(err, errReleased) {
			t.Errorf("released waiter: %v, want errReleased", err)
		}
	}
}

func queued(p *pacer) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.Len()
}

// pacedUpstream builds upstream u with servers victim, s1 and s2 (real
// brokers) under client_id hashing without a load bound, and returns it
// with n client ids whose server is victim.
func pacedUpstream(t *testing.T, victim, s1, s2, extra string, n int) (*Upstream, []string) {
	c := parse(t, "      - { name: victim, address: \""+victim+"\" }\n      - { name: s1, address: \""+s1+
		"\" }\n      - { name: s2, address: \""+s2+"\" }\n",
		"    balance: client_id\n    load_factor: 0\n    connect_retries: 2\n"+extra)
	set, err := Build(c, nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	u := set.Get("u")
	var ids []string
	for i := 0; len(ids) < n; i++ {
		id := fmt.Sprint("client-", i)
		if u.Policy.(balance.Keyed).Home(&balance.Conn{ClientID: id}).Name() == "victim" {
			ids = append(ids, id)
		}
	}
	return u, ids
}

type placed struct {
	server  string
	retries int
	err     error
}

// connectAll connects every id concurrently (each with its own 60 s
// deadline) and returns a channel of their outcomes and a count of those
// done.
func connectAll(t *testing.T, u *Upstream, ids []string) (<-chan placed, *atomic.Int64) {
	out := make(chan placed, len(ids))
	done := new(atomic.Int64)
	for _, id := range ids {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var l Lease
			l.Key.ClientID = id
			conn, _, err := u.Connect(ctx, &l, connectOf(id))
			r := placed{err: err, retries: l.Retries()}
			if err == nil {
				conn.Close()
				r.server = l.Server().Name()
				l.Release(0, 0)
			}
			done.Add(1)
			out <- r
		}()
	}
	return out, done
}

func connectOf(id string) *Handshake {
	return &Handshake{Version: mqttwire.V311,
		Data: mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: id, CleanStart: true})}
}

// TestPaceDeadServerReleasesQueue: clients queued under max_connect_rate
// for a server whose broker dies are not held to its pace. The first
// attempts fail and give their turns back at once, so the server is down
// after `fall` of them, not `fall` turns; then every other waiter picks a
// survivor without counting an attempt (retries=0), instead of waiting for
// its own turn at the dead server to fail there.
func TestPaceDeadServerReleasesQueue(t *testing.T) {
	const n, fall = 20, 3
	victim := testutil.StartMochi(t)
	u, ids := pacedUpstream(t, victim.Addr, testutil.StartMochi(t).Addr, testutil.StartMochi(t).Addr,
		"    max_connect_rate: 4\n    health_check: { type: tcp, fall: 3, interval: 1h }\n", n+1)
	// one client takes the victim's turn, so the others queue behind it
	var warm Lease
	warm.Key.ClientID = ids[n]
	conn, _, err := u.Connect(context.Background(), &warm, connectOf(ids[n]))
	if err != nil || warm.Server().Name() != "victim" {
		t.Fatalf("warm-up: %v", err)
	}
	conn.Close()
	warm.Release(0, 0)

	out, done := connectAll(t, u, ids[:n])
	testutil.Eventually(t, 10*time.Second, func() bool { return u.ConnectQueue()+done.Load() == n }, "%d clients queued", n)
	p := u.Server("victim").pace.Load()
	p.mu.Lock()
	lastOK := p.last // the last turn that placed a client
	p.mu.Unlock()
	victim.Stop()

	withRetries := 0
	for range n {
		r := <-out
		if r.err != nil {
			t.Fatalf("a client was not placed: %v", r.err)
		}
		if r.retries > 0 {
			withRetries++
		}
	}
	if withRetries > fall {
		t.Errorf("%d of %d queued clients were placed after a failed attempt; want at most %d (those that found the server dead): the others only waited", withRetries, n, fall)
	}
	if f := u.Server("victim").Failures(); f > fall {
		t.Errorf("victim: %d failed attempts, want at most fall=%d", f, fall)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.last.Equal(lastOK) {
		t.Errorf("the dead server's failed turns were charged: last grant %v after the last one that placed a client", p.last.Sub(lastOK))
	}
}

// TestPaceReleasedWhenOutOfService: clients waiting for the turn of a
// server that a health check takes down, or an operator drains, go to the
// other servers at once, without an attempt; none is placed on it.
func TestPaceReleasedWhenOutOfService(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  func(s *Server)
	}{
		{"check fails", func(s *Server) { s.report(errors.New("check failed"), 1, 1, true, 0) }},
		{"drain", (*Server).Drain},
		{"disable", (*Server).Disable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 6
			u, ids := pacedUpstream(t, testutil.StartMochi(t).Addr, testutil.StartMochi(t).Addr, testutil.StartMochi(t).Addr,
				"    max_connect_rate: 1\n    health_check: { type: tcp, fall: 1, interval: 1h }\n", n+1)
			u.Server("s1").pace.Store(nil) // the survivors take them at once
			u.Server("s2").pace.Store(nil)
			var warm Lease
			warm.Key.ClientID = ids[n]
			conn, _, err := u.Connect(context.Background(), &warm, connectOf(ids[n]))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { conn.Close(); warm.Release(0, 0) }()

			out, _ := connectAll(t, u, ids[:n])
			testutil.Eventually(t, 10*time.Second, func() bool { return u.ConnectQueue() == n }, "%d clients queued", n)
			tc.out(u.Server("victim"))
			for range n {
				r := <-out
				if r.err != nil || r.server == "victim" || r.retries != 0 {
					t.Errorf("queued client: server %q retries %d err %v; want a survivor, no retry", r.server, r.retries, r.err)
				}
			}
		})
	}
}
