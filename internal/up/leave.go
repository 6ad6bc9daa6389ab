package up

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/mqlb/mqlb/internal/node"
	"github.com/mqlb/mqlb/internal/rebalance"
)

// EvacuateRate is how many connections per second StopNode moves off a
// leaving node.
const EvacuateRate = 100

// StopNode takes a node out of the cluster without dropping anyone: the
// load balancer evacuates it (drain, then its connections closed at
// EvacuateRate per second; the clients reconnect through the LB and take
// their sessions over on the other nodes while this one still runs), then
// the node stops. ctx bounds the evacuation; the node stops either way.
func (s *System) StopNode(ctx context.Context, name string) (rebalance.Evacuation, error) {
	i := slices.IndexFunc(s.Nodes, func(n *node.Node) bool { return n.Name() == name })
	if i < 0 {
		return rebalance.Evacuation{}, fmt.Errorf("no node %q", name)
	}
	n := s.Nodes[i]
	m := s.LB.Rebalance()
	ev, err := m.Evacuate("cluster", name, EvacuateRate)
	for err == nil && ev.Status == rebalance.EvacRunning {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("evacuating %s: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
			ev, _ = m.EvacuationOf("cluster", name)
		}
	}
	s.Nodes = slices.Delete(s.Nodes, i, i+1)
	n.ClusterStopping()
	if cerr := n.Close(); err == nil {
		err = cerr
	}
	return ev, err
}
