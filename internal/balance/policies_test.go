package balance

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestNeverUnusable drives every policy through random availability, skip
// sets and loads: the pick must be usable, and nil exactly when no server is.
func TestNeverUnusable(t *testing.T) {
	for _, policy := range allPolicies {
		t.Run(policy, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			fs := fakes(1, 2, 3, 1, 5, 1, 8, 2)
			p := mustNew(t, policy, fs, Options{LoadFactor: 1.25})
			tr, _ := p.(Tracker)
			for iter := range 5000 {
				skipped := map[Server]bool{}
				anyUsable := false
				for _, f := range fs {
					f.down.Store(rng.IntN(3) == 0)
					f.active.Store(rng.Int64N(20))
					if rng.IntN(4) == 0 {
						skipped[f] = true
					}
					anyUsable = anyUsable || (!f.down.Load() && !skipped[f])
				}
				c := clientConn(fmt.Sprint("c", rng.IntN(50)))
				got := p.Pick(c, func(s Server) bool { return skipped[s] })
				switch {
				case !anyUsable && got != nil:
					t.Fatalf("iteration %d: no usable server, got %s", iter, got.Name())
				case anyUsable && got == nil:
					t.Fatalf("iteration %d: got nil with a usable server", iter)
				case got != nil && (!got.Available() || skipped[got]):
					t.Fatalf("iteration %d: got unusable %s (down=%v skipped=%v)", iter, got.Name(), !got.Available(), skipped[got])
				}
				if tr != nil && got != nil && rng.IntN(2) == 0 {
					tr.Placed(c, got)
					tr.Released(c, got)
				}
			}
		})
	}
}

func TestNilWhenNoneAvailable(t *testing.T) {
	for _, policy := range allPolicies {
		fs := fakes(1, 2)
		p := mustNew(t, policy, fs, Options{})
		if got := p.Pick(clientConn("a"), nil); got == nil {
			t.Fatalf("%s: nil with all servers up", policy)
		}
		fs[0].down.Store(true)
		fs[1].down.Store(true)
		if got := p.Pick(clientConn("a"), nil); got != nil {
			t.Errorf("%s: all down, got %s", policy, got.Name())
		}
		fs[1].down.Store(false)
		if got := p.Pick(clientConn("a"), skipping("s1")); got != nil {
			t.Errorf("%s: the only up server skipped, got %s", policy, got.Name())
		}
		if got := mustNew(t, policy, nil, Options{}).Pick(clientConn("a"), nil); got != nil {
			t.Errorf("%s over no servers: got %s", policy, got.Name())
		}
	}
}

func TestNilConn(t *testing.T) {
	for _, policy := range allPolicies {
		p := mustNew(t, policy, fakes(1, 1), Options{})
		if got := p.Pick(nil, nil); got == nil {
			t.Errorf("%s: Pick(nil conn) = nil", policy)
		}
	}
}
