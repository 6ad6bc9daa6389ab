package upstream

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
)

// State is what a server can do for new connections.
type State uint32

const (
	StateUp       State = iota // healthy and enabled
	StateDown                  // failing health checks or dials
	StateDrain                 // no new connections; existing ones stay (operator)
	StateDisabled              // no new connections, no health checks (operator)
)

func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	case StateDrain:
		return "drain"
	case StateDisabled:
		return "disabled"
	}
	return "unknown"
}

// Admin states set by an operator.
const (
	adminEnabled uint32 = iota
	adminDrain
	adminDisabled
)

// Server is one broker address of an upstream. Its state and counters are
// atomics: policies read them on every pick; health checks, dials and the
// admin API write them. The same *Server lives across config reloads as long
// as its upstream, name and address stay the same.
type Server struct {
	upstream string
	name     string
	addr     string
	ip       bool           // addr is an IP address and port: no name to look up
	ipAddr   netip.AddrPort // addr parsed, when ip
	weight   atomic.Int32   // a reload may change it while policies read it

	healthy atomic.Bool
	admin   atomic.Uint32
	active  atomic.Int64 // connections open or being dialled (a Lease each)
	total   atomic.Uint64
	fails   atomic.Uint64 // failed dials

	pace atomic.Pointer[pacer] // max_connect_rate, nil = no limit
	// changed is when State last changed (unix ns; 0 = not since the
	// server was created), so a change and its undoing between two looks
	// are still seen.
	changed atomic.Int64
	upSince atomic.Int64 // unix ns it came up (slow start); 0 = from the start

	// bytes* accumulate the bytes of finished connections (Lease.Release);
	// whoever reports totals adds the live connections' own.
	bytesIn  atomic.Int64
	bytesOut atomic.Int64

	// unchecked: added to a running upstream with health checks, so down
	// until its first check passes (one is enough: NGINX Plus's
	// "mandatory"), not optimistic as at start.
	unchecked atomic.Bool
	failing   atomic.Bool // failRun > 0, read without the lock on every dial
	mu        sync.Mutex  // guards the health fields below
	okRun     int
	failRun   int
	lastErr   string
	lastCheck time.Time
	lastDur   time.Duration
	log       *slog.Logger
}

var _ balance.Server = (*Server)(nil)

func newServer(upstream, name, addr string, weight int, log *slog.Logger) *Server {
	s := &Server{upstream: upstream, name: name, addr: addr, log: log.With("upstream", upstream, "server", name)}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		s.ip, s.ipAddr = true, ap
	}
	s.weight.Store(int32(weight))
	s.healthy.Store(true) // optimistic until the first check says otherwise
	return s
}

// Name returns the server's name (its address when the config names none).
func (s *Server) Name() string { return s.name }

// Address returns host:port.
func (s *Server) Address() string { return s.addr }

// Upstream returns the upstream's name.
func (s *Server) Upstream() string { return s.upstream }

// Weight returns the configured weight.
func (s *Server) Weight() int { return int(s.weight.Load()) }

// Active returns connections open (or being dialled) to the server.
func (s *Server) Active() int64 { return s.active.Load() }

// Total returns connections ever established to it.
func (s *Server) Total() uint64 { return s.total.Load() }

// Failures returns failed dials.
func (s *Server) Failures() uint64 { return s.fails.Load() }

// Healthy reports the health-check view, ignoring the operator's state.
func (s *Server) Healthy() bool { return s.healthy.Load() }

// Available reports whether the server takes new connections.
func (s *Server) Available() bool {
	return s.admin.Load() == adminEnabled && s.healthy.Load()
}

// State combines the operator's state and health.
func (s *Server) State() State {
	switch s.admin.Load() {
	case adminDrain:
		return StateDrain
	case adminDisabled:
		return StateDisabled
	}
	if !s.healthy.Load() {
		return StateDown
	}
	return StateUp
}

// StateChanged returns when State last changed: health flipped or the
// operator set another state. Zero when it has not changed since the
// server was created.
func (s *Server) StateChanged() time.Time {
	if ns := s.changed.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

func (s *Server) stateChanged() { s.changed.Store(time.Now().UnixNano()) }

// Drain stops new connections; existing ones stay.
func (s *Server) Drain() { s.setAdmin(adminDrain, "drain") }

// Disable stops new connections and health checks; existing ones stay.
func (s *Server) Disable() { s.setAdmin(adminDisabled, "disabled") }

// Enable returns the server to service (subject to health checks).
func (s *Server) Enable() {
	if s.admin.Load() != adminEnabled {
		s.cameUp()
	}
	s.setAdmin(adminEnabled, "enabled")
}

func (s *Server) setAdmin(v uint32, name string) {
	if s.admin.Swap(v) != v {
		s.stateChanged()
		// at debug: who set it logs the change (the admin API, with the requester)
		s.log.Debug("server state set", "state", name)
		if v != adminEnabled {
			s.releaseWaiters()
		}
	}
}

// ClosedBytes returns the bytes of the server's finished connections: in
// (client to server) and out.
func (s *Server) ClosedBytes() (in, out int64) { return s.bytesIn.Load(), s.bytesOut.Load() }

// Health is a snapshot of a server's health-check state.
type Health struct {
	Healthy      bool
	LastCheck    time.Time
	LastDuration time.Duration
	LastError    string
	Successes    int // consecutive
	Failures     int // consecutive
}

// Health returns the health-check state.
func (s *Server) Health() Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Health{Healthy: s.healthy.Load(), LastCheck: s.lastCheck, LastDuration: s.lastDur,
		LastError: s.lastErr, Successes: s.okRun, Failures: s.failRun}
}

// report records one check or dial outcome against rise/fall thresholds and
// flips the health state when a threshold is crossed.
func (s *Server) report(err error, rise, fall int, check bool, dur time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if check {
		s.lastCheck, s.lastDur = time.Now(), dur
	}
	first := check && s.unchecked.Swap(false)
	if err == nil {
		s.okRun++
		s.failRun = 0
		s.failing.Store(false)
		if check {
			s.lastErr = ""
		}
		if !s.healthy.Load() && (s.okRun >= rise || first) {
			s.cameUp()
			s.healthy.Store(true)
			s.stateChanged()
			s.log.Info("server up", "successes", s.okRun)
		}
		return
	}
	s.failRun++
	s.failing.Store(true)
	s.okRun = 0
	s.lastErr = err.Error()
	if first {
		s.log.Warn("server down: its first check failed", "error", err)
	}
	if s.healthy.Load() && s.failRun >= fall {
		s.healthy.Store(false)
		s.stateChanged()
		s.log.Warn("server down", "failures", s.failRun, "error", err, "passive", !check)
		s.releaseWaiters()
	}
}

// dialOK resets the failure streak after a successful connection, taking
// the lock only when there is a streak to reset.
func (s *Server) dialOK() {
	if s.failing.Load() {
		s.mu.Lock()
		s.failRun = 0
		s.failing.Store(false)
		s.mu.Unlock()
	}
}

// rejoin puts back a server that was removed while it had connections as
// if it were added now: slow start, and with health checks down until its
// first check passes (its last results are from before it left).
func (s *Server) rejoin(checked bool) {
	s.mu.Lock()
	s.okRun, s.failRun = 0, 0
	s.failing.Store(false)
	s.healthy.Store(!checked)
	s.unchecked.Store(checked)
	s.mu.Unlock()
	s.cameUp()
	s.stateChanged()
}

// markUp forces the server healthy (used when checks are off and a passive
// failure's timeout has passed).
func (s *Server) markUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failRun = 0
	s.failing.Store(false)
	if !s.healthy.Load() {
		s.cameUp()
		s.healthy.Store(true)
		s.stateChanged()
		s.log.Info("server up", "after", "fail timeout")
	}
}
