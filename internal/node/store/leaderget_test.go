package store

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestLeaderGetReadsLikeGet: LeaderGet answers what the bucket's Get does —
// a key's value and revision, ErrKeyNotFound for a key never written, deleted
// or purged — and its revision is the one a compare-and-set needs, a removed
// key's included.
func TestLeaderGetReadsLikeGet(t *testing.T) {
	nc := testutil.ConnectNATS(t, testutil.StartNATS(t))
	st, err := Open(t.Context(), nc, Plan{Cluster: "lg", Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	kv := st.Sessions

	if _, _, err := st.LeaderGet(t.Context(), kv, "never"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("key never written: %v, want ErrKeyNotFound", err)
	}
	rev, err := kv.Put(t.Context(), "k", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "other", []byte("x")); err != nil {
		t.Fatal(err)
	}
	val, got, err := st.LeaderGet(t.Context(), kv, "k")
	if err != nil || string(val) != "one" || got != rev {
		t.Fatalf("LeaderGet = %q rev %d, %v; want \"one\" rev %d", val, got, err, rev)
	}
	if _, err := kv.Update(t.Context(), "k", []byte("two"), got); err != nil {
		t.Fatalf("update at the revision LeaderGet read: %v", err)
	}
	if val, _, err := st.LeaderGet(t.Context(), kv, "k"); err != nil || string(val) != "two" {
		t.Errorf("after update: %q, %v", val, err)
	}
	if err := kv.Delete(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	_, marker, err := st.LeaderGet(t.Context(), kv, "k")
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("deleted key: %v, want ErrKeyNotFound", err)
	}
	if _, err := kv.Update(t.Context(), "k", []byte("three"), marker); err != nil {
		t.Errorf("update of a deleted key at the revision LeaderGet read (%d): %v", marker, err)
	}
	if err := kv.Purge(t.Context(), "other"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.LeaderGet(t.Context(), kv, "other"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("purged key: %v, want ErrKeyNotFound", err)
	}
}
