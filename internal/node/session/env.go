package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/node/store"
)

// Env is what the session layer uses of its node, and nothing more.
type Env struct {
	Broker *mqtt.Server                  // the local broker the sessions live in
	Store  func() (*store.Store, error)  // the replicated store, while it is open and usable
	Mesh   Mesh                          // interest and the control connection
	Log    *slog.Logger                  // node logger
	Warn   func(msg string, args ...any) // rate-limited warning, for hot paths

	// MayRead is the read ACL check (the auth hook's OnACLCheck): a queued
	// message goes to a client only if it may read the topic at the time of
	// delivery, as mochi checks each message it delivers itself. Nil: all.
	MayRead func(cl *mqtt.Client, topic string) bool

	Drop     func(reason string, n int) // counts dropped messages (mqlb_node_dropped_total)
	TookOver func(result string)        // counts takeovers (mqlb_node_takeovers_total)

	// Cork gathers the writes to a client's connection until Uncork (nil:
	// none; see node/listen/cork.go).
	Cork func(net.Conn) Cork

	Ctx context.Context // background work ends with it
	WG  *sync.WaitGroup // background goroutines, waited for on close

	Node, Instance string        // this node's name, and its run
	Cluster        string        // mesh.cluster_name: subjects and stream
	Timeout        time.Duration // mesh.timeout
	MaxExpiry      time.Duration // sessions.max_expiry
	MaxOffline     int           // sessions.max_offline_messages, at start
	Replicated     bool          // sessions.durability replicated
}

// Cork is a cork on a client's connection: what is written to it
// meanwhile leaves in one write at Uncork. Whoever corks uncorks before
// waiting for anything (what the client needs to answer may be in the
// buffer); a second Uncork does nothing.
type Cork interface {
	Uncork()
}

type noCork struct{}

func (noCork) Uncork() {}

// cork corks cl's connection.
func (e Env) cork(cl *mqtt.Client) Cork {
	if e.Cork == nil || cl.Net.Conn == nil {
		return noCork{}
	}
	return e.Cork(cl.Net.Conn)
}

// Mesh is the part of the node's mesh the session layer uses: the interest
// of sessions it installs, and the control connection for takeovers.
type Mesh interface {
	// Subscribe records that client holds filter; true when the mesh
	// subscribed anew (SyncInterest then makes it known).
	Subscribe(client, filter string) bool
	Unsubscribe(client, filter string)
	// SyncInterest returns once every other node knows the subscriptions
	// made before the call.
	SyncInterest()
	// Control is the connection for takeover requests (nil before the node
	// joins the mesh).
	Control() *nats.Conn
}

// New returns the node's session tracker and its durable sessions, which
// work together.
func New(env Env) (*Tracker, *Durable) {
	s := newTracker(env)
	d := newDurable(env)
	s.durable, d.sessions = d, s
	return s, d
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
