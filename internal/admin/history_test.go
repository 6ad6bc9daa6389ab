package admin

import (
	"testing"
	"time"
)

func TestHistoryRing(t *testing.T) {
	h := newHistory()
	for i := range historySamples + 25 {
		h.add(Sample{T: int64(i)})
	}
	all, _ := h.since(-1)
	if len(all) != historySamples || all[0].T != 25 || all[len(all)-1].T != historySamples+24 {
		t.Fatalf("%d samples from %d to %d", len(all), all[0].T, all[len(all)-1].T)
	}
	for i := 1; i < len(all); i++ {
		if all[i].T != all[i-1].T+1 {
			t.Fatalf("out of order at %d: %d after %d", i, all[i].T, all[i-1].T)
		}
	}
	if tail, _ := h.since(historySamples + 20); len(tail) != 4 {
		t.Errorf("since: %d samples, want 4", len(tail))
	}
}

func TestHistoryTracksStateAndMax(t *testing.T) {
	h := newHistory()
	t0 := time.Unix(1000, 0)
	sample := func(active int64) Sample { return Sample{Servers: map[string]ServerSample{"u/a": {Active: active}}} }
	up := serverState{state: "up"}
	h.track(sample(3), map[string]serverState{"u/a": up, "u/b": up}, t0)
	h.track(sample(1), map[string]serverState{"u/a": up, "u/b": up}, t0.Add(time.Second))
	h.track(sample(2), map[string]serverState{"u/a": {state: "drain"}}, t0.Add(2*time.Second))
	_, servers := h.since(0)
	a := servers["u/a"]
	if a.MaxActive != 3 || a.State != "drain" || !a.LastChanged || !a.StateSince.Equal(t0.Add(2*time.Second)) {
		t.Errorf("u/a: %+v", a)
	}
	if _, ok := servers["u/b"]; ok {
		t.Error("a removed server stays in the history")
	}
}

// TestHistoryChangeBetweenSamples: a drain undone before the next sample is
// still a change, dated by the server.
func TestHistoryChangeBetweenSamples(t *testing.T) {
	h := newHistory()
	t0 := time.Unix(1000, 0)
	h.track(Sample{}, map[string]serverState{"u/a": {state: "up"}}, t0)
	back := t0.Add(1500 * time.Millisecond)
	h.track(Sample{}, map[string]serverState{"u/a": {state: "up", changed: back}}, t0.Add(2*time.Second))
	_, servers := h.since(0)
	if a := servers["u/a"]; a.State != "up" || !a.LastChanged || !a.StateSince.Equal(back) {
		t.Errorf("u/a after drain and enable between samples: %+v", a)
	}
	h.track(Sample{}, map[string]serverState{"u/a": {state: "up", changed: back}}, t0.Add(3*time.Second))
	if _, servers = h.since(0); !servers["u/a"].StateSince.Equal(back) {
		t.Errorf("a later sample moved the change: %+v", servers["u/a"])
	}
}
