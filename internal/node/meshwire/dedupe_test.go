package meshwire

import (
	"testing"
	"time"
)

func TestReplayWindow(t *testing.T) {
	r := NewReplayWindow()
	now := time.Now()
	fresh := func(origin string, seq uint64) bool { return r.Fresh(MsgID{origin, seq}, now) }
	for _, tc := range []struct {
		origin string
		seq    uint64
		want   bool
	}{
		{"a", 1, true}, {"a", 1, false}, {"a", 3, true}, {"a", 2, true}, {"a", 2, false}, {"a", 3, false},
		{"b", 2, true}, {"a", 100, true}, {"a", 37, true}, {"a", 37, false},
		{"a", 100 + windowBits, true},
		{"a", 99, true}, {"a", 99, false}, // below the window: a late message, fresh once
		{"a", 101 + windowBits - 64, true}, {"a", 101 + windowBits - 64, false},
	} {
		if got := fresh(tc.origin, tc.seq); got != tc.want {
			t.Fatalf("fresh(%s, %d) = %v, want %v", tc.origin, tc.seq, got, tc.want)
		}
	}
	if !r.Fresh(MsgID{"a", 5000 + windowBits*3}, now.Add(2*originIdle)) || len(r.origins) != 1 {
		t.Errorf("idle origins not swept: %d left", len(r.origins))
	}
}

// TestReplayWindowLateMessages: messages far behind the newest (a publisher
// paused between numbering and sending) are delivered once each, however
// many copies each has.
func TestReplayWindowLateMessages(t *testing.T) {
	w := new(window)
	if !w.record(10 * windowBits) {
		t.Fatal("first rejected")
	}
	for seq := uint64(1); seq <= 3*lateKept; seq++ {
		for copy := range 3 {
			if got := w.record(seq); got != (copy == 0) {
				t.Fatalf("late %d, copy %d: fresh = %v", seq, copy, got)
			}
		}
	}
}

func TestReplayWindowShiftsAcrossWords(t *testing.T) {
	w := new(window)
	for seq := uint64(1); seq <= 300; seq += 3 {
		if !w.record(seq) {
			t.Fatalf("first %d rejected", seq)
		}
	}
	for seq := uint64(1); seq <= 300; seq++ {
		if got := w.record(seq); got != (seq%3 != 1) {
			t.Fatalf("record(%d) again = %v", seq, got)
		}
	}
}
