package node

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// sent is what a meshOut handed to NATS, each message split back into its
// envelopes.
type sent struct {
	mu   sync.Mutex
	msgs []sentMsg
}

type sentMsg struct {
	subject   string
	envelopes []string
	batch     bool
}

func (s *sent) send(t *testing.T) func(string, []byte) error {
	return func(subject string, data []byte) error {
		m := sentMsg{subject: subject}
		items, batch, err := meshwire.SplitMeshBatch(data)
		if err != nil {
			t.Errorf("%s: malformed batch: %v", subject, err)
		}
		m.batch = batch
		if !batch {
			m.envelopes = []string{string(data)}
		}
		for _, it := range items {
			m.envelopes = append(m.envelopes, string(it.Data))
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
		return nil
	}
}

func (s *sent) all() []sentMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sentMsg(nil), s.msgs...)
}

func newTestOut(t *testing.T, batch bool) (*meshOut, *sent) {
	t.Helper()
	s := &sent{}
	return &meshOut{batch: batch, send: s.send(t),
		fail: func(subject string, err error) { t.Errorf("%s: %v", subject, err) }}, s
}

// queuing returns a meshOut whose adds wait, as while a send is under way.
func queuing(t *testing.T) (*meshOut, *sent) {
	t.Helper()
	o, s := newTestOut(t, true)
	o.sending = true
	return o, s
}

// busy reports whether a send is under way.
func (o *meshOut) busy() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sending
}

// flushQueued sends what waits, in one round.
func flushQueued(o *meshOut) {
	var g grouper
	o.flush(o.buf, o.items, &g)
	o.buf, o.items = nil, nil
}

// TestMeshOutGroupsPerSubject: one round's envelopes go per subject, in the
// order each subject first appears, each subject's in its order; a subject
// with one envelope sends it as it is; batches stop at meshBatchMax
// envelopes and meshBatchBytes bytes.
func TestMeshOutGroupsPerSubject(t *testing.T) {
	o, s := queuing(t)
	for _, e := range []string{"a1", "b1", "a2", "c1", "a3", "b2"} {
		o.add(e[:1], []byte(e))
	}
	flushQueued(o)
	got := fmt.Sprint(s.all())
	if want := "[{a [a1 a2 a3] true} {b [b1 b2] true} {c [c1] false}]"; got != want {
		t.Errorf("sent %s, want %s", got, want)
	}

	o, s = queuing(t)
	for i := range meshBatchMax + 10 {
		o.add("n", fmt.Appendf(nil, "%d", i))
	}
	big := bytes.Repeat([]byte{'x'}, meshBatchBytes/2-10)
	for range 5 {
		o.add("big", big)
	}
	o.add("huge", bytes.Repeat([]byte{'y'}, meshBatchBytes+1))
	flushQueued(o)
	var sizes []string
	next := 0
	for _, m := range s.all() {
		sizes = append(sizes, fmt.Sprintf("%s:%d", m.subject, len(m.envelopes)))
		if m.subject == "n" {
			for _, e := range m.envelopes {
				if e != fmt.Sprint(next) {
					t.Fatalf("subject n: %s after %d", e, next-1)
				}
				next++
			}
		}
	}
	if got, want := strings.Join(sizes, " "), fmt.Sprintf("n:%d n:10 big:2 big:2 big:1 huge:1", meshBatchMax); got != want {
		t.Errorf("batches %s, want %s", got, want)
	}
}

// TestMeshOutSendsWhatWaitsAfterItsOwn: a publish that finds no send under
// way goes at once, alone; those added while it is being sent wait, and its
// sender hands them to a goroutine that sends them, per subject. With
// mesh.batch off every publish goes alone, at once.
func TestMeshOutSendsWhatWaitsAfterItsOwn(t *testing.T) {
	for _, batch := range []bool{true, false} {
		o, s := newTestOut(t, batch)
		inSend, release := make(chan struct{}), make(chan struct{})
		inSecond, releaseSecond := make(chan struct{}), make(chan struct{})
		send := o.send
		calls := 0
		o.send = func(subject string, data []byte) error {
			calls++ // one send at a time: no lock needed
			switch calls {
			case 1:
				close(inSend)
				<-release
			case 2:
				if batch {
					close(inSecond)
					<-releaseSecond
				}
			}
			return send(subject, data)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			o.add("a", []byte("a1"))
		}()
		<-inSend
		if !batch {
			o.add("a", []byte("a2")) // goes at once: nothing waits for the first
			close(release)
			<-done
			if got, want := fmt.Sprint(s.all()), "[{a [a2] false} {a [a1] false}]"; got != want {
				t.Errorf("mesh.batch false: sent %s, want %s", got, want)
			}
			continue
		}
		for _, e := range []string{"a2", "b1", "a3"} {
			o.add(e[:1], []byte(e)) // the first is being sent: these wait
		}
		if n := len(s.all()); n != 0 {
			t.Fatalf("%d sent while the first send was under way", n)
		}
		close(release)
		<-inSecond
		select { // the publisher is not held sending for the others
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the first publisher still sending while the others' publishes go out")
		}
		close(releaseSecond)
		testutil.Eventually(t, 10*time.Second, func() bool { return !o.busy() }, "the waiting publishes not sent: %v", s.all())
		if got, want := fmt.Sprint(s.all()), "[{a [a1] false} {a [a2 a3] true} {b [b1] false}]"; got != want {
			t.Errorf("sent %s, want %s", got, want)
		}
		o.add("c", []byte("c1"))
		if got := fmt.Sprint(s.all()[3:]); got != "[{c [c1] false}]" {
			t.Errorf("then alone: sent %s", got)
		}
	}
}

// TestMeshOutConcurrentPublishers: envelopes added from several goroutines
// at once all go out, each publisher's to one subject in its order.
func TestMeshOutConcurrentPublishers(t *testing.T) {
	o, s := newTestOut(t, true)
	const pubs, each = 4, 2000
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Go(func() {
			for i := range each {
				o.add(fmt.Sprint("t", p%2), fmt.Appendf(nil, "%d-%d", p, i))
			}
		})
	}
	wg.Wait()
	count := func() (n int) {
		for _, m := range s.all() {
			n += len(m.envelopes)
		}
		return n
	}
	// What the last sender handed to a goroutine may still be going out.
	testutil.Eventually(t, 10*time.Second, func() bool { return count() == pubs*each }, "sent %d of %d", count(), pubs*each)
	last := map[string]int{}
	batches := 0
	for _, m := range s.all() {
		if m.batch {
			batches++
		}
		for _, e := range m.envelopes {
			var p, i int
			fmt.Sscanf(e, "%d-%d", &p, &i)
			if m.subject != fmt.Sprint("t", p%2) {
				t.Fatalf("%s on %s", e, m.subject)
			}
			key := fmt.Sprint(p)
			if prev, ok := last[key]; (ok && i != prev+1) || (!ok && i != 0) {
				t.Fatalf("publisher %d: %d after %d", p, i, prev)
			}
			last[key] = i
		}
	}
	t.Logf("%d publishes in %d NATS messages, %d of them batches", pubs*each, len(s.all()), batches)
}
