package balance

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentUse runs many goroutines through Pick, Placed and Released
// while servers go up and down, the clock moves, the sticky table is read
// and swept, and the policy is reloaded; run it with -race. Every placement
// is released on the policy that made it, as the proxy does, so at the end
// no sticky entry may still count an active connection.
func TestConcurrentUse(t *testing.T) {
	for _, policy := range allPolicies {
		t.Run(policy, func(t *testing.T) {
			h := newHarness(t, policy)
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Go(func() { h.work(w, 1500) })
			}
			wg.Wait()
			if n := h.failed.Load(); n > 0 {
				t.Errorf("%d picks returned nil with s0 always up", n)
			}
			if st, ok := h.current().(StickyTable); ok {
				for _, e := range st.Entries() {
					if e.Active != 0 {
						t.Errorf("all connections closed, entry %+v", e)
					}
				}
			}
		})
	}
}

// harness holds the policy being hammered, swapped on reload as the config
// reloader does.
type harness struct {
	t        *testing.T
	policy   string
	opts     Options
	clock    *fakeClock
	cur      atomic.Pointer[Policy]
	reloadMu sync.Mutex // reloads are serialised
	failed   atomic.Int64
}

func newHarness(t *testing.T, policy string) *harness {
	h := &harness{t: t, policy: policy, clock: newFakeClock()}
	h.opts = Options{LoadFactor: 1.25, StickySize: 64, StickyTTL: time.Minute, Now: h.clock.Now}
	p := mustNew(t, policy, fakes(1, 2, 3, 4), h.opts)
	h.cur.Store(&p)
	return h
}

func (h *harness) current() Policy { return *h.cur.Load() }

func (h *harness) reload() {
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	o := h.opts
	o.Prev = h.current()
	p := mustNew(h.t, h.policy, fakes(1, 2, 3, 4), o)
	h.cur.Store(&p)
}

// work places and releases n connections, doing chores in between.
func (h *harness) work(w, n int) {
	rng := rand.New(rand.NewPCG(uint64(w), 7))
	for i := range n {
		p := h.current()
		c := clientConn(fmt.Sprint("k", rng.IntN(100)))
		s, _ := p.Pick(c, nil).(*fakeServer)
		if s == nil {
			h.failed.Add(1) // s0 is never down
			continue
		}
		tr, _ := p.(Tracker)
		s.active.Add(1)
		if tr != nil {
			tr.Placed(c, s)
		}
		h.chores(w, i, rng, p, s)
		s.active.Add(-1)
		if tr != nil {
			tr.Released(c, s)
		}
	}
}

// chores is what some workers do between Placed and Released.
func (h *harness) chores(w, i int, rng *rand.Rand, p Policy, s *fakeServer) {
	switch {
	case w == 0 && i%300 == 0:
		h.reload()
	case w == 1 && i%50 == 0:
		if st, ok := p.(StickyTable); ok {
			st.Entries()
			st.Len()
		}
	case w == 2 && i%100 == 0:
		h.clock.Advance(20 * time.Second)
	case w == 3 && i%10 == 0 && s.name != "s0":
		s.down.Store(rng.IntN(2) == 0)
	}
}
