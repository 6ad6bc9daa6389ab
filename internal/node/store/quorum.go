package store

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// CheckQuorum asks each stream of the store (the buckets and the queue)
// for its leader and returns an error naming the first that has none, or
// does not answer within ctx. A store whose streams lost their majority
// answers no operation, but without traffic nothing fails and the
// cooldown (Note) never starts: this is what tells health checks.
func (s *Store) CheckQuorum(ctx context.Context) error {
	names := make([]string, 0, 5)
	for _, kv := range []jetstream.KeyValue{s.Retained, s.Sessions, s.QoS2} {
		if kv != nil {
			names = append(names, "KV_"+kv.Bucket())
		}
	}
	if s.Queue != nil {
		names = append(names, s.Queue.CachedInfo().Config.Name)
	}
	for _, name := range names {
		st, err := s.JS.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("store stream %s: %w", name, err)
		}
		if ci := st.CachedInfo().Cluster; ci != nil && ci.Leader == "" {
			return fmt.Errorf("store stream %s has no leader (no quorum)", name)
		}
	}
	return nil
}
