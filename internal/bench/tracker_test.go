package bench

import "testing"

// deliver feeds sequence numbers of publisher p to a receiver.
func deliver(r *receiver, p int, seqs ...uint64) {
	for _, s := range seqs {
		r.record(p, s)
	}
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestAccountTopics(t *testing.T) {
	// 2 publishers, 3 subscribers, 2 topics: publisher 0 and subscribers 0
	// and 2 use topic 0; publisher 1 and subscriber 1 use topic 1.
	rt := routing{pubs: 2, subs: 3, topics: 2}
	subs := []*receiver{newReceiver(2), newReceiver(2), newReceiver(2)}
	// sub 0 gets all 100 of publisher 0, in order.
	deliver(subs[0], 0, seq(0, 100)...)
	// sub 2 misses 10..14, gets 50 twice, and 70 after 71.
	deliver(subs[2], 0, seq(0, 10)...)
	deliver(subs[2], 0, seq(15, 70)...)
	deliver(subs[2], 0, 50, 71, 70)
	deliver(subs[2], 0, seq(72, 100)...)
	// sub 1 gets publisher 1's 50 messages but 0 twice, and one message of
	// publisher 0 it did not subscribe to.
	deliver(subs[1], 1, 0)
	deliver(subs[1], 1, seq(0, 50)...)
	deliver(subs[1], 0, 3)
	// publisher 1 also sent 60..79, never delivered.
	c := account(rt, []int64{100, 80}, subs)
	want := Counts{
		Published:  180,
		Expected:   100*2 + 80,
		Received:   100 + (10 + 55 + 3 + 28) + (1 + 50) + 1,
		Lost:       5 + 30,
		Duplicated: 1 + 1,
		OutOfOrder: 1,
		Unexpected: 1,
	}
	if c != want {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestAccountShared(t *testing.T) {
	// One publisher, a shared group of 3: each message should reach exactly
	// one member.
	rt := routing{pubs: 1, subs: 3, topics: 1, shared: true}
	subs := []*receiver{newReceiver(1), newReceiver(1), newReceiver(1)}
	for i := uint64(0); i < 300; i++ {
		if i == 123 { // lost
			continue
		}
		deliver(subs[i%3], 0, i)
	}
	// Member 1 got 4 already: a duplicate across the group; on member 0's
	// stream it is new and older than 297, so out of order as well.
	deliver(subs[0], 0, 4)
	deliver(subs[2], 0, 200) // member 2 got 200 already: a duplicate within its stream
	deliver(subs[1], 0, 1)   // member 1 got 1 already: a duplicate (not out of order)
	subs[2].recordForeign()
	c := account(rt, []int64{300}, subs)
	want := Counts{Published: 300, Expected: 300, Received: 299 + 3, Lost: 1, Duplicated: 3, OutOfOrder: 1, Foreign: 1}
	if c != want {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestAccountSharedOutOfOrder(t *testing.T) {
	rt := routing{pubs: 1, subs: 2, topics: 1, shared: true}
	subs := []*receiver{newReceiver(1), newReceiver(1)}
	deliver(subs[0], 0, 0, 2, 1, 3) // 1 after 2 on member 0's stream
	deliver(subs[1], 0, 5, 4)       // 4 after 5 on member 1's stream
	c := account(rt, []int64{6}, subs)
	want := Counts{Published: 6, Expected: 6, Received: 6, OutOfOrder: 2}
	if c != want {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestAccountNoSubscribers(t *testing.T) {
	c := account(routing{pubs: 1, subs: 0, topics: 1, shared: true}, []int64{10}, nil)
	if c != (Counts{Published: 10}) {
		t.Errorf("got %+v, want only 10 published", c)
	}
}
