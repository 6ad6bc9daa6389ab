package node

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// store holds the cluster's replicated state in JetStream key-value buckets:
//
//	mqlb_<cluster>_retained   base64url(topic) → retained message (see retained.go)
//	mqlb_<cluster>_sessions   base64url(client id) → session record (see registry.go)
//
// and, with sessions.durability replicated, the stream mqlb_<cluster>_queue
// of QoS 1/2 messages for persistent sessions (see durable.go) and the
// bucket mqlb_<cluster>_qos2 of their QoS 2 exchanges (see qos2.go).
//
// Both keep one revision per key, in files, with markers for removed keys
// kept markerTTL so watchers see removals and tombstones do not pile up.
type store struct {
	js        jetstream.JetStream
	retained  jetstream.KeyValue
	sessions  jetstream.KeyValue
	queue     jetstream.Stream   // nil with sessions.durability memory
	qos2      jetstream.KeyValue // nil with sessions.durability memory
	ttl       bool               // per-message TTL (NATS 2.11+) is available on the buckets
	downUntil atomic.Int64       // unix nanos: after a failure, treat the store as down until then
}

const (
	markerTTL = 5 * time.Minute
	// storeCooldown is how long a failed store operation makes the node skip
	// the store: without JetStream quorum a connect then costs one timeout
	// per cooldown, not one per client.
	storeCooldown = time.Second
)

var errStoreDown = errors.New("store unavailable (a recent operation failed)")

// usable reports whether the store is not in its cooldown.
func (s *store) usable() bool { return time.Now().UnixNano() >= s.downUntil.Load() }

// note starts a cooldown if err is a failure of the store itself (not a
// compare-and-set conflict or a missing key) and returns err.
func (s *store) note(err error) error {
	if err != nil && !isConflict(err) && !errors.Is(err, jetstream.ErrKeyNotFound) {
		s.downUntil.Store(time.Now().Add(storeCooldown).UnixNano())
	}
	return err
}

// storePlan says how to size the buckets.
type storePlan struct {
	cluster  string
	replicas int           // configured; 0 = automatic
	peers    func() int    // servers in the cluster (embedded NATS), nil when external
	queueAge time.Duration // > 0: keep the session queue stream, its messages at most this long
}

// want returns the replica count the buckets should have now.
func (p storePlan) want() int {
	switch {
	case p.replicas > 0:
		return p.replicas
	case p.peers == nil:
		return 3 // external cluster: try 3, fall back to 1 if it is smaller
	default:
		return min(3, max(1, p.peers()))
	}
}

func (p storePlan) bucket(kind string) string { return "mqlb_" + p.cluster + "_" + kind }

// openStore binds (creating if needed) both buckets. It fails while
// JetStream is not available yet; callers retry.
func openStore(ctx context.Context, nc *nats.Conn, p storePlan) (*store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s := &store{js: js, ttl: true}
	if s.retained, err = s.bucket(ctx, p, "retained"); err != nil {
		return nil, err
	}
	if s.sessions, err = s.bucket(ctx, p, "sessions"); err != nil {
		return nil, err
	}
	if p.queueAge > 0 {
		if s.queue, err = s.queueStream(ctx, p); err != nil {
			return nil, err
		}
		if s.qos2, err = s.bucket(ctx, p, "qos2"); err != nil {
			return nil, err
		}
	}
	// A node that just joined may not see the replicas' direct-get responders
	// yet: the store is open once a read works from here.
	if _, err := s.sessions.Get(ctx, "mqlb.probe"); !errors.Is(err, jetstream.ErrKeyNotFound) { // no base64 key has a dot
		return nil, fmt.Errorf("sessions bucket not readable yet: %w", err)
	}
	return s, nil
}

func (s *store) bucket(ctx context.Context, p storePlan, kind string) (jetstream.KeyValue, error) {
	name := p.bucket(kind)
	kv, err := s.js.KeyValue(ctx, name)
	if err == nil {
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, err
		}
		s.ttl = s.ttl && st.LimitMarkerTTL() > 0
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
		LimitMarkerTTL: markerTTL,
	}
	if kind == "qos2" {
		cfg.TTL = p.queueAge // a record outlives no session
	}
	for {
		kv, err = s.js.CreateKeyValue(ctx, cfg)
		switch {
		case err == nil:
			return kv, nil
		case errors.Is(err, jetstream.ErrBucketExists):
			return s.js.KeyValue(ctx, name)
		case errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) && cfg.LimitMarkerTTL > 0:
			cfg.LimitMarkerTTL, s.ttl = 0, false
		case p.peers == nil && cfg.Replicas > 1 && isReplicaError(err):
			cfg.Replicas = 1
		default:
			return nil, fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
}

// queueStream binds (creating if needed) the session queue stream.
func (s *store) queueStream(ctx context.Context, p storePlan) (jetstream.Stream, error) {
	name := p.bucket("queue")
	st, err := s.js.Stream(ctx, name)
	if err == nil || !errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, err
	}
	cfg := jetstream.StreamConfig{
		Name:        name,
		Description: "mqlb QoS 1/2 messages of persistent sessions",
		Subjects:    []string{"mqlb." + p.cluster + ".q.>"},
		Retention:   jetstream.InterestPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    p.want(),
		MaxAge:      p.queueAge,
		Discard:     jetstream.DiscardOld,
	}
	for {
		st, err = s.js.CreateStream(ctx, cfg)
		switch {
		case err == nil:
			return st, nil
		case errors.Is(err, jetstream.ErrStreamNameAlreadyInUse):
			return s.js.Stream(ctx, name)
		case p.peers == nil && cfg.Replicas > 1 && isReplicaError(err):
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

// scaleUp raises the buckets' replicas to what the plan wants now (more
// nodes joined since they were created). It never lowers them.
func (s *store) scaleUp(ctx context.Context, p storePlan) error {
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
		if _, err := s.js.UpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("scale bucket %s to %d replicas: %w", cfg.Bucket, want, err)
		}
	}
	if s.queue == nil {
		return nil
	}
	info, err := s.queue.Info(ctx)
	if err != nil {
		return err
	}
	if cfg := info.Config; cfg.Replicas < want {
		cfg.Replicas = want
		if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("scale stream %s to %d replicas: %w", cfg.Name, want, err)
		}
	}
	return nil
}

// replicas returns the current replica count of the buckets and the queue
// stream (the lowest; for the stream, the replicas it has, not only wants).
func (s *store) replicas(ctx context.Context) (int, error) {
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
	if s.queue != nil {
		info, err := s.queue.Info(ctx)
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
func (s *store) buckets() []jetstream.KeyValue {
	if s.qos2 == nil {
		return []jetstream.KeyValue{s.retained, s.sessions}
	}
	return []jetstream.KeyValue{s.retained, s.sessions, s.qos2}
}
