// Package balance owns the load balancer's server-selection policies: the
// Policy interface, a registry that builds a policy by its config name, and
// the policies themselves, one small file each:
//
//	round_robin  smooth weighted round robin (nginx)
//	least_conn   fewest active connections relative to weight
//	random       power of two random choices
//	source_ip    consistent hash of the client IP, bounded load
//	client_id    consistent hash of the MQTT client identifier, bounded load
//	username     consistent hash of the MQTT username, bounded load
//	sticky       key → server table with TTL and size cap (HAProxy stick-table)
//
// A policy sees servers only through the Server interface and reads their
// availability and active connection counts live at Pick time. The set of
// servers is fixed for a policy's life: a config reload builds a new policy
// and passes the old one as Options.Prev so state worth keeping carries over
// by server name.
package balance

import (
	"net/netip"
	"time"
)

// Server is what a policy sees of a backend. internal/upstream's *Server
// implements it.
type Server interface {
	// Name is the server's stable identity, used for hashing and sticky
	// tables; it is the same across config reloads.
	Name() string
	// Weight is 1..256.
	Weight() int
	// Active is the number of connections currently open to the server
	// (maintained elsewhere, read atomically).
	Active() int64
	// Available reports whether health checks say the server is up and its
	// admin state allows new connections.
	Available() bool
}

// Conn describes the connection being placed.
type Conn struct {
	ClientID string
	Username string
	Source   netip.Addr // client IP (after PROXY protocol)
}

// Policy chooses a server for a connection.
//
// Pick is called concurrently. It never returns an unavailable server or one
// for which skip returns true (skip lists servers whose dial already failed
// for this connection; skip may be nil). It returns nil when no server can
// take the connection.
type Policy interface {
	Pick(c *Conn, skip func(Server) bool) Server
}

// Tracker is implemented by policies that keep per-placement state (sticky).
// upstream.Connect calls Placed after a successful attempt on s, and the
// connection's Lease.Release calls Released when it closes, both on the
// policy whose Pick chose s.
type Tracker interface {
	Placed(c *Conn, s Server)
	Released(c *Conn, s Server)
}

// Options configures a policy. The zero value is valid for every policy.
type Options struct {
	// LoadFactor is the bounded-load factor c for the hashing policies
	// (e.g. 1.25); 0 means no load bound. Otherwise it must be at least 1.
	LoadFactor float64
	// StickyKey is "client_id" (the default) or "username".
	StickyKey string
	// StickyTTL is how long a sticky entry lives after its last connection
	// closed; 0 means 30 minutes.
	StickyTTL time.Duration
	// StickySize caps the sticky table; 0 means 100,000 entries.
	StickySize int
	// Prev is the policy this one replaces on config reload. State that
	// should survive (sticky table, round-robin position) is carried over by
	// server name.
	Prev Policy
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
}

// StickyEntry is one row of the sticky table, for the admin API
// (GET /api/v1/sticky/{upstream}).
type StickyEntry struct {
	Key      string    `json:"key"`
	Server   string    `json:"server"`
	Active   int       `json:"active"`
	LastUsed time.Time `json:"last_used"`
	Expires  time.Time `json:"expires,omitzero"` // zero while Active > 0
}

// StickyTable is implemented by the sticky policy.
type StickyTable interface {
	Entries() []StickyEntry // a snapshot, most recently used first
	Len() int
}

// Sweeper is implemented by policies with expiring state (sticky). Expired
// state is also removed lazily and by a sweep piggybacked on traffic; an
// owner with a ticker of its own may call Sweep to reclaim memory on an idle
// upstream. Sweep returns how many entries it removed.
type Sweeper interface {
	Sweep() int
}
