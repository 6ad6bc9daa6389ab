package node

import (
	"testing"
	"time"
	_ "unsafe"
)

//go:linkname natsRandElectionTimeout github.com/nats-io/nats-server/v2/server.randElectionTimeout
func natsRandElectionTimeout() time.Duration

func TestRaftElectionTimeouts(t *testing.T) {
	for range 1000 {
		if d := natsRandElectionTimeout(); d < raftElectionMin || d >= raftElectionMax {
			t.Fatalf("nats-server picked an election timeout of %v, want [%v, %v)", d, raftElectionMin, raftElectionMax)
		}
	}
}
