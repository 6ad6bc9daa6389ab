package meshwire

import (
	"testing"
	"time"
)

// TestDelaysAgainstQuickestRecent: lateness is measured from the origin's
// quickest recent messages, whatever the difference of the two clocks; a
// clock stepped forward is resynchronised after resyncAfter of nothing on
// time.
func TestDelaysAgainstQuickestRecent(t *testing.T) {
	const bound = 2 * time.Second
	at := time.Unix(1_800_000_000, 0)
	ms := func(d time.Duration) int64 { return at.Add(d).UnixMilli() }
	d := NewDelays()
	for _, c := range []struct {
		name   string
		origin string
		sent   int64 // on the origin's clock
		now    time.Duration
		late   bool
	}{
		{"first message of a", "a", ms(-5 * time.Millisecond), 0, false},
		{"a, 1.9 s slower", "a", ms(-1900 * time.Millisecond), 0, false},
		{"a, 2.5 s slower", "a", ms(-2500 * time.Millisecond), 0, true},
		// b's clock is an hour behind: its lag is an hour, every time.
		{"first message of b", "b", ms(-time.Hour), 0, false},
		{"b, on time", "b", ms(-time.Hour + time.Second), time.Second, false},
		{"b, 3 s slower", "b", ms(-time.Hour + time.Second), 4 * time.Second, true},
		// a's clock steps back a minute: its lag drops, followed at once.
		{"a after a step back", "a", ms(5*time.Second + time.Minute), 5 * time.Second, false},
		{"a, 2.5 s slower than that", "a", ms(5*time.Second + time.Minute - 2500*time.Millisecond), 5 * time.Second, true},
		// a's clock steps back a minute again: everything of a looks late...
		{"a after its step back", "a", ms(6 * time.Second), 6 * time.Second, true},
		{"a, still", "a", ms(14 * time.Second), 14 * time.Second, true},
		// ...until nothing was on time for resyncAfter: then that is the new quickest.
		{"a, resynchronised", "a", ms(16 * time.Second), 16 * time.Second, false},
		{"a, on time again", "a", ms(17 * time.Second), 17 * time.Second, false},
		{"a, 2.5 s slower again", "a", ms(18*time.Second - 2500*time.Millisecond), 18 * time.Second, true},
	} {
		if got := d.Late(c.origin, c.sent, at.Add(c.now), bound); got != c.late {
			t.Errorf("%s: late = %v, want %v", c.name, got, c.late)
		}
	}
}

// TestDelaysWindowForgetsOldQuickest: a lowest lag older than two windows
// no longer counts, so the lag drifting up (the clocks drifting apart, a
// longer route) is followed without a stretch of messages taken for late.
func TestDelaysWindowForgetsOldQuickest(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	d := NewDelays()
	d.Late("a", at.UnixMilli(), at, time.Second) // lag 0
	const tick = 5 * time.Second
	for i := 1; i <= 14; i++ {
		now := at.Add(time.Duration(i) * tick)
		lag := 900 * time.Millisecond // on time against 0 as against 900 ms
		if i == 7 || i == 14 {
			lag = 1500 * time.Millisecond
		}
		late := d.Late("a", now.Add(-lag).UnixMilli(), now, time.Second)
		// At 35 s the lag-0 window is the previous one; at 70 s it is gone.
		if want := i == 7; late != want {
			t.Errorf("at %v, lag %v: late = %v, want %v", time.Duration(i)*tick, lag, late, want)
		}
	}
}
