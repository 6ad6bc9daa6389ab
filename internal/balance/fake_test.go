package balance

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer is a Server whose availability and active count tests set.
type fakeServer struct {
	name   string
	weight int
	active atomic.Int64
	down   atomic.Bool
}

func (s *fakeServer) Name() string    { return s.name }
func (s *fakeServer) Weight() int     { return s.weight }
func (s *fakeServer) Active() int64   { return s.active.Load() }
func (s *fakeServer) Available() bool { return !s.down.Load() }

var _ Server = (*fakeServer)(nil)

// fakes returns servers s0, s1, … with the given weights.
func fakes(weights ...int) []*fakeServer {
	out := make([]*fakeServer, len(weights))
	for i, w := range weights {
		out[i] = &fakeServer{name: fmt.Sprintf("s%d", i), weight: w}
	}
	return out
}

// equalFakes returns n servers of weight 1.
func equalFakes(n int) []*fakeServer {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return fakes(w...)
}

func asServers(fs []*fakeServer) []Server {
	out := make([]Server, len(fs))
	for i, f := range fs {
		out[i] = f
	}
	return out
}

func mustNew(tb testing.TB, name string, fs []*fakeServer, opts Options) Policy {
	tb.Helper()
	p, err := New(name, asServers(fs), opts)
	if err != nil {
		tb.Fatalf("New(%q): %v", name, err)
	}
	return p
}

// skipping returns a skip function for the named servers.
func skipping(names ...string) func(Server) bool {
	return func(s Server) bool {
		for _, n := range names {
			if s.Name() == n {
				return true
			}
		}
		return false
	}
}

// name is s's name, or "<nil>".
func name(s Server) string {
	if s == nil {
		return "<nil>"
	}
	return s.Name()
}

// clientConn is a connection with client id id from a fixed IP.
func clientConn(id string) *Conn {
	return &Conn{ClientID: id, Source: netip.MustParseAddr("192.0.2.1")}
}

// ipConn is a connection without client id or username from the i-th IP.
func ipConn(i int) *Conn {
	return &Conn{Source: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}
}

// fakeClock is a settable clock.
type fakeClock struct{ t atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.t.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.t.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.t.Add(int64(d)) }
