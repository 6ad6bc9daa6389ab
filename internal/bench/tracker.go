package bench

import (
	"math/bits"
	"sync"
)

// routing says which subscribers should get a publisher's messages: without
// a shared subscription, subscriber s listens to topic s%topics and
// publisher p publishes to topic p%topics, so every subscriber of that topic
// gets a copy; with one, all subscribers form one group and each message goes
// to exactly one member.
type routing struct {
	pubs, subs, topics int
	shared             bool
}

func (r routing) pubTopic(p int) int { return p % r.topics }
func (r routing) subTopic(s int) int { return s % r.topics }

// routed reports whether subscriber s should receive publisher p's messages.
func (r routing) routed(p, s int) bool { return r.shared || r.pubTopic(p) == r.subTopic(s) }

// copies is how many times each message of publisher p should be received.
func (r routing) copies(p int) int64 {
	if r.shared {
		return int64(min(r.subs, 1))
	}
	var n int64
	for s := range r.subs {
		if r.routed(p, s) {
			n++
		}
	}
	return n
}

// stream is what one subscriber received from one publisher.
type stream struct {
	seen       []uint64 // bitmap of sequence numbers received
	received   int64    // every delivery, duplicates included
	dups       int64    // deliveries of a sequence number already seen here
	outOfOrder int64    // new sequence numbers lower than one already seen
	top        uint64   // highest sequence number seen + 1 (0: none)
}

func (st *stream) record(seq uint64) (isNew bool) {
	st.received++
	w, bit := seq/64, uint64(1)<<(seq%64)
	if w >= uint64(len(st.seen)) {
		st.seen = append(st.seen, make([]uint64, int(w)+1-len(st.seen))...)
	}
	if st.seen[w]&bit != 0 {
		st.dups++
		return false
	}
	st.seen[w] |= bit
	if seq+1 < st.top {
		st.outOfOrder++
	} else {
		st.top = seq + 1
	}
	return true
}

func (st *stream) unique() int64 { return st.received - st.dups }

// receiver is one subscriber's record of what it received, by publisher.
// Only that subscriber's client calls record, but the lock makes the final
// accounting safe whatever the client library does with its goroutines.
type receiver struct {
	mu      sync.Mutex
	streams []stream // by publisher index
	foreign int64
}

func newReceiver(pubs int) *receiver { return &receiver{streams: make([]stream, pubs)} }

// record notes a delivery of publisher pub's message seq.
func (r *receiver) record(pub int, seq uint64) (isNew bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.streams[pub].record(seq)
}

func (r *receiver) recordForeign() {
	r.mu.Lock()
	r.foreign++
	r.mu.Unlock()
}

// Counts is the message accounting of a pub/sub run.
type Counts struct {
	Published  int64 `json:"published"`    // messages the publishers sent
	Expected   int64 `json:"expected"`     // deliveries the subscriptions call for
	Received   int64 `json:"received"`     // deliveries, duplicates included
	Lost       int64 `json:"lost"`         // expected deliveries that never came
	Duplicated int64 `json:"duplicated"`   // deliveries of a message already delivered (to the stream, or with --shared to the group)
	OutOfOrder int64 `json:"out_of_order"` // new messages older than one already delivered on the same publisher→subscriber stream
	Unexpected int64 `json:"unexpected"`   // deliveries to a subscriber whose topic the publisher does not use
	Foreign    int64 `json:"foreign"`      // messages that were not this run's
}

// account compares what was published (by publisher) with what each
// subscriber received. Call it once the clients have stopped.
func account(rt routing, published []int64, subs []*receiver) Counts {
	var c Counts
	for _, r := range subs {
		r.mu.Lock()
		defer r.mu.Unlock()
		c.Foreign += r.foreign
	}
	for p, n := range published {
		c.Published += n
		c.Expected += n * rt.copies(p)
		if rt.shared {
			accountGroup(&c, p, n, subs)
			continue
		}
		for s, r := range subs {
			st := &r.streams[p]
			c.Received += st.received
			c.OutOfOrder += st.outOfOrder
			if !rt.routed(p, s) {
				c.Unexpected += st.received
				continue
			}
			c.Duplicated += st.dups
			c.Lost += max(n-st.unique(), 0)
		}
	}
	return c
}

// accountGroup accounts publisher p's n messages to a shared subscription:
// each should reach exactly one member, so a message any member got is not
// lost, and every delivery beyond the first, to whichever member, is a
// duplicate.
func accountGroup(c *Counts, p int, n int64, subs []*receiver) {
	if len(subs) == 0 {
		return
	}
	var union []uint64
	var received int64
	for _, r := range subs {
		st := &r.streams[p]
		received += st.received
		c.OutOfOrder += st.outOfOrder
		if len(st.seen) > len(union) {
			union = append(union, make([]uint64, len(st.seen)-len(union))...)
		}
		for i, w := range st.seen {
			union[i] |= w
		}
	}
	var unique int64
	for _, w := range union {
		unique += int64(bits.OnesCount64(w))
	}
	c.Received += received
	c.Duplicated += received - unique
	c.Lost += max(n-unique, 0)
}
