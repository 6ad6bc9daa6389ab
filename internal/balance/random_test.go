package balance

import "testing"

func TestRandomPrefersLessLoaded(t *testing.T) {
	fs := equalFakes(2)
	fs[0].active.Store(5)
	p := mustNew(t, "random", fs, Options{})
	for i := range 1000 {
		if got := p.Pick(nil, nil); got != fs[1] {
			t.Fatalf("pick %d: %s, want the idle s1 (two servers: both are always drawn)", i, name(got))
		}
	}
}

func TestRandomNeverPicksMostLoaded(t *testing.T) {
	// The most loaded server loses whichever other server it is drawn with.
	fs := equalFakes(4)
	fs[2].active.Store(10)
	p := mustNew(t, "random", fs, Options{})
	counts := map[string]int{}
	for range 4000 {
		counts[name(p.Pick(nil, nil))]++
	}
	if counts["s2"] != 0 {
		t.Errorf("most loaded s2 picked %d times", counts["s2"])
	}
	for _, n := range []string{"s0", "s1", "s3"} {
		if counts[n] < 1000 {
			t.Errorf("counts %v: %s picked under 1000 of 4000", counts, n)
		}
	}
}

func TestRandomLoadRelativeToWeight(t *testing.T) {
	fs := fakes(4, 1)
	fs[0].active.Store(4) // 1.0 per weight
	fs[1].active.Store(2) // 2.0
	p := mustNew(t, "random", fs, Options{})
	for i := range 200 {
		if got := p.Pick(nil, nil); got != fs[0] {
			t.Fatalf("pick %d: %s, want s0 (lower load per weight)", i, name(got))
		}
	}
}

func TestRandomWeightedDraw(t *testing.T) {
	// Idle servers tie, so the first draw wins: it is weighted 3:1.
	// 20,000 draws put the share within ±0.05 of 0.75 (about 16 standard
	// deviations), so this fails only if the draw ignores weights.
	p := mustNew(t, "random", fakes(3, 1), Options{})
	n := 0
	for range 20000 {
		if p.Pick(nil, nil).Name() == "s0" {
			n++
		}
	}
	if share := float64(n) / 20000; share < 0.70 || share > 0.80 {
		t.Errorf("weight-3 server share %.3f, want 0.75±0.05", share)
	}
}
