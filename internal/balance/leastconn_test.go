package balance

import "testing"

func TestLeastConnRelativeToWeight(t *testing.T) {
	fs := fakes(1, 4, 2)
	fs[0].active.Store(3) // 3.0 per weight
	fs[1].active.Store(8) // 2.0, the least loaded though it has the most
	fs[2].active.Store(5) // 2.5
	p := mustNew(t, "least_conn", fs, Options{})
	for i := range 10 {
		if got := p.Pick(nil, nil); got != fs[1] {
			t.Fatalf("pick %d: %s, want s1", i, name(got))
		}
	}
	if got := p.Pick(nil, skipping("s1")); got != fs[2] {
		t.Errorf("s1 skipped: %s, want s2", name(got))
	}
	fs[2].down.Store(true)
	if got := p.Pick(nil, skipping("s1")); got != fs[0] {
		t.Errorf("s1 skipped, s2 down: %s, want s0", name(got))
	}
}

func TestLeastConnSpreadsTies(t *testing.T) {
	fs := equalFakes(3)
	p := mustNew(t, "least_conn", fs, Options{})
	counts := map[string]int{}
	for range 300 {
		counts[name(p.Pick(nil, nil))]++
	}
	for _, f := range fs {
		if counts[f.name] != 100 {
			t.Fatalf("idle servers picked %v, want 100 each", counts)
		}
	}
}

func TestLeastConnFillsByWeight(t *testing.T) {
	fs := fakes(1, 2, 3)
	p := mustNew(t, "least_conn", fs, Options{})
	for range 600 {
		p.Pick(nil, nil).(*fakeServer).active.Add(1)
	}
	for i, want := range []int64{100, 200, 300} {
		if got := fs[i].active.Load(); got < want-1 || got > want+1 {
			t.Errorf("s%d has %d connections, want %d±1", i, got, want)
		}
	}
}
