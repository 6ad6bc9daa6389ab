package balance

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

const ttl = 30 * time.Minute

func newStickyT(t *testing.T, fs []*fakeServer, clock *fakeClock, opts Options) *sticky {
	t.Helper()
	opts.Now = clock.Now
	if opts.StickyTTL == 0 {
		opts.StickyTTL = ttl
	}
	return mustNew(t, "sticky", fs, opts).(*sticky)
}

// connect picks for c, reports the placement and counts it on the server.
func connect(t *testing.T, p *sticky, c *Conn) *fakeServer {
	t.Helper()
	s, ok := p.Pick(c, nil).(*fakeServer)
	if !ok {
		t.Fatalf("Pick(%+v) = nil", c)
	}
	p.Placed(c, s)
	s.active.Add(1)
	return s
}

func disconnect(p *sticky, c *Conn, s *fakeServer) {
	s.active.Add(-1)
	p.Released(c, s)
}

// entry returns key's row in the table, failing if it is missing.
func entry(t *testing.T, p StickyTable, key string) StickyEntry {
	t.Helper()
	for _, e := range p.Entries() {
		if e.Key == key {
			return e
		}
	}
	t.Fatalf("no sticky entry for %q in %+v", key, p.Entries())
	return StickyEntry{}
}

func keys(p StickyTable) []string {
	var out []string
	for _, e := range p.Entries() {
		out = append(out, e.Key)
	}
	slices.Sort(out)
	return out
}

// burden makes s the busiest server by far, so that least_conn would not
// choose it: only stickiness can.
func burden(s *fakeServer) { s.active.Add(100) }

func TestStickySameServerUntilExpiry(t *testing.T) {
	clock, fs := newFakeClock(), equalFakes(3)
	p := newStickyT(t, fs, clock, Options{})
	c := clientConn("dev-1")
	first := connect(t, p, c)
	burden(first)
	for i := range 5 {
		if got := p.Pick(c, nil); got != first {
			t.Fatalf("pick %d: %s, want stuck %s", i, name(got), first.name)
		}
	}
	disconnect(p, c, first)
	clock.Advance(ttl - time.Nanosecond)
	if got := p.Pick(c, nil); got != first {
		t.Fatalf("just before expiry: %s, want %s", name(got), first.name)
	}
	clock.Advance(time.Nanosecond)
	if got := p.Pick(c, nil); got == first {
		t.Fatalf("after expiry still %s; want least_conn's choice", first.name)
	}
	if p.Len() != 0 {
		t.Errorf("expired entry still counted: Len %d", p.Len())
	}
}

func TestStickyTTLCountsFromRelease(t *testing.T) {
	clock, fs := newFakeClock(), equalFakes(3)
	p := newStickyT(t, fs, clock, Options{})
	c := clientConn("dev-1")
	s := connect(t, p, c)
	clock.Advance(3 * ttl) // connected for longer than the TTL
	if e := entry(t, p, "dev-1"); e.Active != 1 || !e.Expires.IsZero() || e.Server != s.name {
		t.Fatalf("while connected: %+v, want active 1 on %s with no expiry", e, s.name)
	}
	burden(s)
	if got := p.Pick(c, nil); got != s {
		t.Fatalf("connected past the TTL: %s, want %s", name(got), s.name)
	}
	disconnect(p, c, s)
	released := clock.Now()
	if e := entry(t, p, "dev-1"); e.Active != 0 || !e.Expires.Equal(released.Add(ttl)) || !e.LastUsed.Equal(released) {
		t.Fatalf("after release: %+v, want expiry %v", e, released.Add(ttl))
	}
	clock.Advance(ttl / 2)
	if got := p.Pick(c, nil); got != s {
		t.Fatalf("half a TTL after release: %s, want %s", name(got), s.name)
	}
	clock.Advance(ttl / 2)
	if got := p.Pick(c, nil); got == s {
		t.Fatalf("a TTL after release: still %s", s.name)
	}
}

func TestStickyActiveCountsConnections(t *testing.T) {
	clock := newFakeClock()
	p := newStickyT(t, equalFakes(2), clock, Options{})
	c := clientConn("dev-1")
	s := connect(t, p, c)
	connect(t, p, c) // a second connection with the same client id
	disconnect(p, c, s)
	if e := entry(t, p, "dev-1"); e.Active != 1 || !e.Expires.IsZero() {
		t.Fatalf("one of two closed: %+v", e)
	}
	disconnect(p, c, s)
	disconnect(p, c, s) // an extra Released must not go negative
	if e := entry(t, p, "dev-1"); e.Active != 0 || e.Expires.IsZero() {
		t.Fatalf("both closed: %+v", e)
	}
}

func TestStickySizeEvictsLRUIdle(t *testing.T) {
	clock, fs := newFakeClock(), equalFakes(2)
	p := newStickyT(t, fs, clock, Options{StickySize: 3})
	cs := map[string]*Conn{}
	for _, k := range []string{"a", "b", "c", "d"} {
		cs[k] = clientConn(k)
	}
	connect(t, p, cs["a"]) // a stays connected
	for _, k := range []string{"b", "c"} {
		clock.Advance(time.Second)
		disconnect(p, cs[k], connect(t, p, cs[k]))
	}
	clock.Advance(time.Second)
	connect(t, p, cs["d"])
	if got, want := keys(p), []string{"a", "c", "d"}; !slices.Equal(got, want) {
		t.Fatalf("after d: keys %v, want %v (b was the least recently used idle entry)", got, want)
	}
	clock.Advance(time.Second)
	connect(t, p, cs["c"]) // now all three are active
	e := clientConn("e")
	if got := p.Pick(e, nil); got == nil {
		t.Fatal("table full of active entries: Pick returned nil")
	}
	es := connect(t, p, e)
	if got, want := keys(p), []string{"a", "c", "d"}; !slices.Equal(got, want) {
		t.Fatalf("table full of active entries: keys %v, want %v (e placed without recording)", got, want)
	}
	disconnect(p, e, es) // the unrecorded connection closes: no effect
	if got := entry(t, p, "a"); got.Active != 1 {
		t.Errorf("entry a after e closed: %+v", got)
	}
}

func TestStickyReplacesUnavailable(t *testing.T) {
	clock, fs := newFakeClock(), equalFakes(3)
	p := newStickyT(t, fs, clock, Options{})
	c := clientConn("dev-1")
	first := connect(t, p, c) // stays open until after the re-placement
	first.down.Store(true)
	second, ok := p.Pick(c, nil).(*fakeServer)
	if !ok || second == first {
		t.Fatalf("stuck server down: got %s", name(second))
	}
	p.Placed(c, second)
	if e := entry(t, p, "dev-1"); e.Server != second.name || e.Active != 2 {
		t.Fatalf("after re-placement: %+v, want on %s with 2 connections", e, second.name)
	}
	disconnect(p, c, first) // the connection to the dead server closes
	if e := entry(t, p, "dev-1"); e.Server != second.name || e.Active != 1 {
		t.Fatalf("old connection closed: %+v, want on %s with 1 connection", e, second.name)
	}
	first.down.Store(false)
	burden(second)
	if got := p.Pick(c, nil); got != second {
		t.Errorf("first server back: %s, want the new placement %s", name(got), second.name)
	}
	if got := p.Pick(c, skipping(second.name)); got == second || got == nil {
		t.Errorf("stuck server skipped: got %s", name(got))
	}
}

func TestStickyKeys(t *testing.T) {
	clock := newFakeClock()
	ip := netip.MustParseAddr("198.51.100.7")
	byUser := newStickyT(t, equalFakes(2), clock, Options{StickyKey: "username"})
	connect(t, byUser, &Conn{ClientID: "id-1", Username: "alice", Source: ip})
	connect(t, byUser, &Conn{ClientID: "id-2", Source: ip})
	if got, want := keys(byUser), []string{"198.51.100.7", "alice"}; !slices.Equal(got, want) {
		t.Errorf("username keys %v, want %v", got, want)
	}
	byID := newStickyT(t, equalFakes(2), clock, Options{})
	connect(t, byID, &Conn{ClientID: "id-1", Username: "alice", Source: ip})
	connect(t, byID, &Conn{Username: "bob", Source: ip})
	if got, want := keys(byID), []string{"198.51.100.7", "id-1"}; !slices.Equal(got, want) {
		t.Errorf("client id keys %v, want %v", got, want)
	}
}

func TestStickySweep(t *testing.T) {
	clock := newFakeClock()
	p := newStickyT(t, equalFakes(2), clock, Options{})
	const n = 3*sweepBatch + 10
	for i := range n {
		c := clientConn(fmt.Sprint("k", i))
		disconnect(p, c, connect(t, p, c))
	}
	live := clientConn("live")
	connect(t, p, live)
	clock.Advance(ttl)
	// Traffic sweeps one batch at a time.
	p.Pick(clientConn("other"), nil)
	if got := len(p.table.m); got != n+1-sweepBatch {
		t.Fatalf("after one Pick: %d entries, want %d", got, n+1-sweepBatch)
	}
	if got := p.Sweep(); got != n-sweepBatch {
		t.Errorf("Sweep removed %d, want %d", got, n-sweepBatch)
	}
	if got := keys(p); !slices.Equal(got, []string{"live"}) {
		t.Errorf("after sweep: %v, want only the connected key", got)
	}
}

func TestStickyEntriesNewestFirst(t *testing.T) {
	clock := newFakeClock()
	p := newStickyT(t, equalFakes(2), clock, Options{})
	for _, k := range []string{"x", "y", "z"} {
		clock.Advance(time.Second)
		connect(t, p, clientConn(k))
	}
	var got []string
	for _, e := range p.Entries() {
		got = append(got, e.Key)
	}
	if !slices.Equal(got, []string{"z", "y", "x"}) {
		t.Errorf("Entries order %v, want z y x", got)
	}
}
