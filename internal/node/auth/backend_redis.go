package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/mqlb/mqlb/internal/config"
)

// redisBackend reads a hash at a key made from a pattern (%u the user name,
// %c the client id): field password_hash holds the bcrypt hash, optional
// field acl a JSON list of rules. No key: ignored.
type redisBackend struct {
	client *redis.Client
	key    string
}

func newRedisBackend(c config.AuthBackend) (*redisBackend, error) {
	// Every wait is bounded by the store's timeout: the lookup's context
	// (ContextTimeoutEnabled; without it go-redis ignores the context's
	// deadline and a hung server held each client for its own 3 s read
	// timeout and more), and dial, read and write on their own.
	t := c.Timeout.D()
	o := &redis.Options{Addr: c.Address, Password: c.Password, DB: c.DB, DisableIdentity: true,
		ContextTimeoutEnabled: true, DialTimeout: t, ReadTimeout: t, WriteTimeout: t, PoolTimeout: t}
	if strings.HasPrefix(c.Address, "/") {
		o.Network = "unix"
	}
	return &redisBackend{client: redis.NewClient(o), key: c.Key}, nil
}

func (b *redisBackend) Authenticate(ctx context.Context, r Request) (Decision, error) {
	key := strings.NewReplacer("%u", r.Username, "%c", r.ClientID).Replace(b.key)
	h, err := b.client.HGetAll(ctx, key).Result()
	if err != nil {
		return Decision{}, fmt.Errorf("redis: %w", err)
	}
	hash, ok := h["password_hash"]
	if !ok {
		return Decision{Result: Ignore}, nil
	}
	if res, err := checkHash([]byte(hash), r.Password); res != Allow {
		return Decision{Result: res}, err
	}
	var es []aclEntry
	if a := h["acl"]; a != "" {
		if err := json.Unmarshal([]byte(a), &es); err != nil {
			return Decision{}, fmt.Errorf("redis %s field acl: %w", key, err)
		}
	}
	rules, err := toRules(es)
	if err != nil {
		return Decision{}, fmt.Errorf("redis %s field acl: %w", key, err)
	}
	return Decision{Result: Allow, ACL: rules}, nil
}

func (b *redisBackend) Close() error { return b.client.Close() }

// redisLogger takes go-redis's own lines (its pool's dial retries, which
// it prints to stderr unformatted) into the node's log, at debug: what
// matters, the refused client, is logged where the hook refuses it. The
// logger is go-redis's, global, so this is too; the hook sets it.
type redisLogger struct{ l atomic.Pointer[slog.Logger] }

func (r *redisLogger) Printf(_ context.Context, format string, v ...any) {
	if l := r.l.Load(); l != nil {
		l.Debug(fmt.Sprintf(format, v...))
	}
}

var redisLog = new(redisLogger)

func init() { redis.SetLogger(redisLog) }
