package balance

import (
	"fmt"
	"slices"
	"testing"
)

// reloaded returns new Server values with the same names and weights, as a
// config reload builds them, without the named ones.
func reloaded(fs []*fakeServer, without ...string) []*fakeServer {
	var out []*fakeServer
	for _, f := range fs {
		if !slices.Contains(without, f.name) {
			out = append(out, &fakeServer{name: f.name, weight: f.weight})
		}
	}
	return out
}

func TestStickySurvivesReload(t *testing.T) {
	clock, fs := newFakeClock(), equalFakes(4)
	old := newStickyT(t, fs, clock, Options{})
	stuck := map[string]string{}
	for i := range 40 {
		c := clientConn(fmt.Sprint("k", i))
		s := connect(t, old, c)
		stuck[c.ClientID] = s.name
		if i%2 == 0 {
			disconnect(old, c, s)
		}
	}
	nfs := reloaded(fs, "s3")
	p := newStickyT(t, nfs, clock, Options{Prev: old})
	for _, f := range nfs {
		burden(f) // least_conn must not explain a match
	}
	for key, was := range stuck {
		got := name(p.Pick(clientConn(key), nil))
		switch {
		case was == "s3" && got == "s3":
			t.Errorf("%s: still on the removed server", key)
		case was != "s3" && got != was:
			t.Errorf("%s: %s after reload, was %s", key, got, was)
		}
	}
	for _, e := range p.Entries() {
		if e.Server == "s3" || stuck[e.Key] != e.Server {
			t.Errorf("carried entry %+v, was on %s", e, stuck[e.Key])
		}
	}
	onS3 := countValues(stuck, "s3")
	if want := len(stuck) - onS3; onS3 == 0 || p.Len() != want {
		t.Errorf("carried %d entries, want %d (the %d of s3 dropped)", p.Len(), want, onS3)
	}
}

func countValues(m map[string]string, v string) int {
	n := 0
	for _, x := range m {
		if x == v {
			n++
		}
	}
	return n
}

func TestStickyReloadForwardsReleases(t *testing.T) {
	clock, fs := newFakeClock(), equalFakes(2)
	old := newStickyT(t, fs, clock, Options{})
	c := clientConn("dev-1")
	s := connect(t, old, c)
	p := newStickyT(t, reloaded(fs), clock, Options{Prev: old})
	if e := entry(t, p, "dev-1"); e.Active != 1 {
		t.Fatalf("carried entry %+v, want active 1", e)
	}
	// The connection placed before the reload closes on the old policy.
	disconnect(old, c, s)
	if e := entry(t, p, "dev-1"); e.Active != 0 || e.Expires.IsZero() {
		t.Errorf("after the old policy's Released: %+v, want idle with an expiry", e)
	}
	// A placement that straddled the reload lands in the new table too.
	c2 := clientConn("dev-2")
	s2 := old.Pick(c2, nil)
	old.Placed(c2, s2)
	if e := entry(t, p, "dev-2"); e.Active != 1 || e.Server != s2.Name() {
		t.Errorf("placed through the old policy: %+v", e)
	}
}

func TestStickyAbandonedReload(t *testing.T) {
	clock, fs := newFakeClock(), equalFakes(2)
	old := newStickyT(t, fs, clock, Options{})
	c := clientConn("dev-1")
	s := connect(t, old, c)
	newStickyT(t, reloaded(fs), clock, Options{Prev: old}) // built, never used
	disconnect(old, c, s)
	if e := entry(t, old, "dev-1"); e.Active != 0 {
		t.Errorf("old policy after an abandoned reload: %+v, want its own count updated", e)
	}
}

func TestStickyReloadChangedKeyStartsEmpty(t *testing.T) {
	clock, fs := newFakeClock(), equalFakes(2)
	old := newStickyT(t, fs, clock, Options{})
	connect(t, old, clientConn("dev-1"))
	p := newStickyT(t, reloaded(fs), clock, Options{Prev: old, StickyKey: "username"})
	if n := p.Len(); n != 0 {
		t.Errorf("client id table carried into a username table: %v", p.Entries())
	}
}

func TestStickyReloadSmallerKeepsRecent(t *testing.T) {
	clock, fs := newFakeClock(), equalFakes(2)
	old := newStickyT(t, fs, clock, Options{})
	busy := clientConn("busy")
	connect(t, old, busy)
	for i := range 5 {
		clock.Advance(1)
		c := clientConn(fmt.Sprint("k", i))
		disconnect(old, c, connect(t, old, c))
	}
	p := newStickyT(t, reloaded(fs), clock, Options{Prev: old, StickySize: 3})
	if got, want := keys(p), []string{"busy", "k3", "k4"}; !slices.Equal(got, want) {
		t.Errorf("size 3 after reload: %v, want %v", got, want)
	}
}

func TestRoundRobinPrevOfOtherKind(t *testing.T) {
	// A Prev of another policy is ignored, not an error.
	old := mustNew(t, "least_conn", equalFakes(2), Options{})
	for _, policy := range allPolicies {
		if _, err := New(policy, asServers(equalFakes(2)), Options{Prev: old}); err != nil {
			t.Errorf("%s with a least_conn Prev: %v", policy, err)
		}
	}
}
