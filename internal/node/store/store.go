// Package store opens the cluster's replicated state in JetStream: the
// key-value buckets of retained messages, session records and QoS 2
// exchanges, and the stream of queued messages for persistent sessions. It
// sizes them (replicas as the cluster grows) and keeps a cooldown after a
// failure; what is written there belongs to the packages that use it.
package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Store holds the cluster's replicated state in JetStream key-value buckets:
//
//	mqlb_<cluster>_retained   base64url(topic) → retained message (node/retained.go)
//	mqlb_<cluster>_sessions   base64url(client id) → session record (session/registry.go)
//
// and, with sessions.durability replicated, the stream mqlb_<cluster>_queue
// of QoS 1/2 messages for persistent sessions (session/durable.go) and the
// bucket mqlb_<cluster>_qos2 of their QoS 2 exchanges (session/qos2.go).
//
// Both keep one revision per key, in files, with markers for removed keys
// kept MarkerTTL so watchers see removals and tombstones do not pile up.
type Store struct {
	JS        jetstream.JetStream
	Retained  jetstream.KeyValue
	Sessions  jetstream.KeyValue
	Queue     jetstream.Stream   // nil with sessions.durability memory
	QoS2      jetstream.KeyValue // nil with sessions.durability memory
	TTL       bool               // per-message TTL (NATS 2.11+) is available on the buckets
	downUntil atomic.Int64       // unix nanos: after a failure, treat the store as down until then
}

const (
	// MarkerTTL is how long a removed key's marker stays.
	MarkerTTL = 5 * time.Minute
	// storeCooldown is how long a failed store operation makes the node skip
	// the store: without JetStream quorum a connect then costs one timeout
	// per cooldown, not one per client.
	storeCooldown = time.Second
)

var (
	// ErrNotReady: the store is not open yet.
	ErrNotReady = errors.New("session registry not ready")
	// ErrDown: the store is cooling down after a failure (see Note).
	ErrDown = errors.New("store unavailable (a recent operation failed)")
)

// Usable reports whether the store is not in its cooldown.
func (s *Store) Usable() bool { return time.Now().UnixNano() >= s.downUntil.Load() }

// Note starts a cooldown if err is a failure of the store itself (not a
// compare-and-set conflict, a missing key or another refusal of one
// request, see refused) and returns err.
func (s *Store) Note(err error) error {
	if err != nil && !IsConflict(err) && !errors.Is(err, jetstream.ErrKeyNotFound) && !refused(err) {
		s.downUntil.Store(time.Now().Add(storeCooldown).UnixNano())
	}
	return err
}

// refused reports an error the store answered for one request (a 4xx
// JetStream API error: a limit reached, a consumer not found, a config it
// will not take): the store is up, and the other clients' operations go on.
// (A consumer limit reached by one session's anchor used to put the store
// into its cooldown for every client of the node.)
func refused(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500
}

// Plan says how to size the buckets.
type Plan struct {
	Cluster  string
	Replicas int           // configured; 0 = automatic
	Peers    func() int    // servers in the cluster (embedded NATS), nil when external
	QueueAge time.Duration // > 0: keep the session queue stream, its messages at most this long
	// AckTimeout is how long an asynchronous write waits for the stream's
	// answer before nats.go gives it up (ErrAsyncPublishTimeout) and
	// forgets it; 0: it waits, and is remembered, forever.
	AckTimeout time.Duration
}

// want returns the replica count the buckets should have now.
func (p Plan) want() int {
	switch {
	case p.Replicas > 0:
		return p.Replicas
	case p.Peers == nil:
		return 3 // external cluster: try 3, fall back to 1 if it is smaller
	default:
		return min(3, max(1, p.Peers()))
	}
}

func (p Plan) bucket(kind string) string { return "mqlb_" + p.Cluster + "_" + kind }

// Open binds (creating if needed) both buckets. It fails while
// JetStream is not available yet; callers retry.
func Open(ctx context.Context, nc *nats.Conn, p Plan) (*Store, error) {
	var opts []jetstream.JetStreamOpt
	if p.AckTimeout > 0 {
		// A write sent to a leader that died is never answered: without a
		// timeout it stays in nats.go's pending table, and at 4,000 of them
		// every later write stalls and fails.
		opts = append(opts, jetstream.WithPublishAsyncTimeout(p.AckTimeout))
	}
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		return nil, err
	}
	s := &Store{JS: js, TTL: true}
	if s.Retained, err = s.bucket(ctx, p, "retained"); err != nil {
		return nil, err
	}
	if s.Sessions, err = s.bucket(ctx, p, "sessions"); err != nil {
		return nil, err
	}
	if p.QueueAge > 0 {
		if s.Queue, err = s.queueStream(ctx, p); err != nil {
			return nil, err
		}
		if s.QoS2, err = s.bucket(ctx, p, "qos2"); err != nil {
			return nil, err
		}
	}
	// A node that just joined may not see the replicas' direct-get responders
	// yet: the store is open once a read works from here.
	if _, err := s.Sessions.Get(ctx, "mqlb.probe"); !errors.Is(err, jetstream.ErrKeyNotFound) { // no base64 key has a dot
		return nil, fmt.Errorf("sessions bucket not readable yet: %w", err)
	}
	return s, nil
}

func (s *Store) bucket(ctx context.Context, p Plan, kind string) (jetstream.KeyValue, error) {
	name := p.bucket(kind)
	kv, err := s.JS.KeyValue(ctx, name)
	if err == nil {
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, err
		}
		s.TTL = s.TTL && st.LimitMarkerTTL() > 0
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, err
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:         name,
		Description:    "mqlb " + kind,
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       p.want(),
		LimitMarkerTTL: MarkerTTL,
	}
	if kind == "qos2" {
		cfg.TTL = p.QueueAge // a record outlives no session
	}
	for {
		kv, err = s.JS.CreateKeyValue(ctx, cfg)
		switch {
		case err == nil:
			return kv, nil
		case errors.Is(err, jetstream.ErrBucketExists):
			return s.JS.KeyValue(ctx, name)
		case errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) && cfg.LimitMarkerTTL > 0:
			cfg.LimitMarkerTTL, s.TTL = 0, false
		case p.Peers == nil && cfg.Replicas > 1 && isReplicaError(err):
			cfg.Replicas = 1
		default:
			return nil, fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
}

// queueMaxConsumers is the queue stream's consumer limit: every persistent
// session has a consumer (its anchor, session/consumer.go) while it lives,
// connected or not, so none is set. It is set as a number because a stream
// without one (-1) gets the server's default_max_consumers (1,000 in
// nats-server 2.15, embedded or not): the cluster then took about 1,000
// persistent sessions, and every CONNECT past them failed a store write,
// which made the store look down for everyone (err_code 10026).
const queueMaxConsumers = math.MaxInt32

// queueStream binds (creating if needed) the session queue stream.
func (s *Store) queueStream(ctx context.Context, p Plan) (jetstream.Stream, error) {
	name := p.bucket("queue")
	st, err := s.JS.Stream(ctx, name)
	if err == nil {
		if cfg := st.CachedInfo().Config; !cfg.AllowDirect || cfg.MaxConsumers != queueMaxConsumers {
			// written by an earlier version: the sessions read it with
			// direct gets, and it takes a consumer per session
			cfg.AllowDirect, cfg.MaxConsumers = true, queueMaxConsumers
			return s.JS.UpdateStream(ctx, cfg)
		}
	}
	if err == nil || !errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, err
	}
	cfg := jetstream.StreamConfig{
		Name:         name,
		Description:  "mqlb QoS 1/2 messages of persistent sessions",
		Subjects:     []string{"mqlb." + p.Cluster + ".q.>"},
		Retention:    jetstream.InterestPolicy,
		Storage:      jetstream.FileStorage,
		Replicas:     p.want(),
		MaxAge:       p.QueueAge,
		Discard:      jetstream.DiscardOld,
		AllowDirect:  true, // sessions read their messages from any replica (session/reader.go)
		MaxConsumers: queueMaxConsumers,
	}
	for {
		st, err = s.JS.CreateStream(ctx, cfg)
		switch {
		case err == nil:
			return st, nil
		case errors.Is(err, jetstream.ErrStreamNameAlreadyInUse):
			return s.JS.Stream(ctx, name)
		case p.Peers == nil && cfg.Replicas > 1 && isReplicaError(err):
			cfg.Replicas = 1
		default:
			return nil, fmt.Errorf("create stream %s: %w", name, err)
		}
	}
}

func isReplicaError(err error) bool {
	var apiErr *jetstream.APIError
	const (
		insufficientResources = 10023
		replicasNotSupported  = 10074 // replicas > 1 not supported in non-clustered mode
	)
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == insufficientResources || apiErr.ErrorCode == replicasNotSupported)
}

// ScaleUp raises the buckets' replicas to what the plan wants now (more
// nodes joined since they were created). It never lowers them.
func (s *Store) ScaleUp(ctx context.Context, p Plan) error {
	want := p.want()
	for _, kv := range s.buckets() {
		st, err := kv.Status(ctx)
		if err != nil {
			return err
		}
		cfg := st.Config()
		if cfg.Replicas >= want {
			continue
		}
		cfg.Replicas = want
		if _, err := s.JS.UpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("scale bucket %s to %d replicas: %w", cfg.Bucket, want, err)
		}
	}
	if s.Queue == nil {
		return nil
	}
	info, err := s.Queue.Info(ctx)
	if err != nil {
		return err
	}
	if cfg := info.Config; cfg.Replicas < want {
		cfg.Replicas = want
		if _, err := s.JS.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("scale stream %s to %d replicas: %w", cfg.Name, want, err)
		}
	}
	return nil
}

// Replicas returns the current replica count of the buckets and the queue
// stream (the lowest; for the stream, the replicas it has, not only wants).
func (s *Store) Replicas(ctx context.Context) (int, error) {
	n := 0
	for _, kv := range s.buckets() {
		st, err := kv.Status(ctx)
		if err != nil {
			return 0, err
		}
		if r := st.Config().Replicas; n == 0 || r < n {
			n = r
		}
	}
	if s.Queue != nil {
		info, err := s.Queue.Info(ctx)
		if err != nil {
			return 0, err
		}
		n = min(n, info.Config.Replicas)
		if info.Cluster != nil && info.Cluster.Leader != "" {
			n = min(n, len(info.Cluster.Replicas)+1)
		}
	}
	return n, nil
}

// buckets returns the store's key-value buckets.
func (s *Store) buckets() []jetstream.KeyValue {
	if s.QoS2 == nil {
		return []jetstream.KeyValue{s.Retained, s.Sessions}
	}
	return []jetstream.KeyValue{s.Retained, s.Sessions, s.QoS2}
}

// IsConflict reports a failed compare-and-set: another node changed the record.
func IsConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
