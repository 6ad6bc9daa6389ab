package balance

import (
	"strings"
	"testing"
)

// picks returns the names of n picks, joined by spaces.
func picks(p Policy, n int, skip func(Server) bool) string {
	out := make([]string, n)
	for i := range out {
		out[i] = name(p.Pick(nil, skip))
	}
	return strings.Join(out, " ")
}

// abc names three fakes a, b, c.
func abc(weights ...int) []*fakeServer {
	fs := fakes(weights...)
	for i, f := range fs {
		f.name = string(rune('a' + i))
	}
	return fs
}

func TestRoundRobinSmoothSequence(t *testing.T) {
	// nginx's smooth weighted round robin for weights 5, 1, 1.
	p := mustNew(t, "round_robin", abc(5, 1, 1), Options{})
	want := "a a b a c a a a a b a c a a"
	if got := picks(p, 14, nil); got != want {
		t.Fatalf("sequence %q, want %q", got, want)
	}
}

func TestRoundRobinWeights(t *testing.T) {
	p := mustNew(t, "round_robin", fakes(3, 2, 1), Options{})
	counts := map[string]int{}
	for range 600 {
		counts[name(p.Pick(nil, nil))]++
	}
	if counts["s0"] != 300 || counts["s1"] != 200 || counts["s2"] != 100 {
		t.Fatalf("counts %v, want s0=300 s1=200 s2=100", counts)
	}
}

func TestRoundRobinSkipsUnusable(t *testing.T) {
	fs := abc(5, 1, 1)
	p := mustNew(t, "round_robin", fs, Options{})
	fs[1].down.Store(true)
	// Without b the candidates are a (5) and c (1).
	if got, want := picks(p, 6, nil), "a a a c a a"; got != want {
		t.Errorf("b down: %q, want %q", got, want)
	}
	fs[1].down.Store(false)
	if got := picks(p, 7, skipping("a")); strings.Contains(got, "a") {
		t.Errorf("a skipped: %q", got)
	}
}

func TestRoundRobinCarriesPosition(t *testing.T) {
	old := mustNew(t, "round_robin", abc(5, 1, 1), Options{})
	if got := picks(old, 3, nil); got != "a a b" {
		t.Fatalf("first picks %q", got)
	}
	// A reload builds new Server values with the same names.
	p := mustNew(t, "round_robin", abc(5, 1, 1), Options{Prev: old})
	if got, want := picks(p, 4, nil), "a c a a"; got != want {
		t.Errorf("after reload %q, want the sequence to continue %q", got, want)
	}
	fresh := mustNew(t, "round_robin", abc(5, 1, 1), Options{})
	if got := picks(fresh, 4, nil); got == "a c a a" {
		t.Errorf("a fresh policy also gives %q: the test cannot tell carry-over apart", got)
	}
}
