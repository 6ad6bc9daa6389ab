package node

import (
	"time"
	_ "unsafe" // go:linkname: nats-server's raft election timeouts

	_ "github.com/nats-io/nats-server/v2/server"
)

// Raft election timeouts of the embedded NATS server. A follower that hears
// no heartbeat from its group's leader (sent every second) for a random time
// between these two starts an election. nats-server's defaults, 4–9 s, are
// made for clusters spread over a WAN; after a kill -9 they bound how long
// the survivors cannot write the session registry or a session's queue, and
// so how long a moved client is refused its session: 9–10.7 s on a loaded
// CI machine (the durable-sessions test requires 10 s). Between nodes on one
// network, 3–5 s still needs a leader silent for three heartbeat intervals
// before anyone campaigns, and brings a moved client back within 7 s.
//
// nats-server keeps these in unexported package variables (its own tests
// shorten them too); they are set once, in init, before any server starts,
// and read by every raft group of the process.
const (
	raftElectionMin = 3 * time.Second
	raftElectionMax = 5 * time.Second
)

//go:linkname natsMinElection github.com/nats-io/nats-server/v2/server.minElectionTimeout
var natsMinElection time.Duration

//go:linkname natsMaxElection github.com/nats-io/nats-server/v2/server.maxElectionTimeout
var natsMaxElection time.Duration

func init() {
	natsMinElection, natsMaxElection = raftElectionMin, raftElectionMax
}
