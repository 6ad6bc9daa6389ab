package node

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// clusterJSON is GET /api/v1/cluster: this node's view of its cluster.
type clusterJSON struct {
	Node     string       `json:"node"`
	Cluster  string       `json:"cluster"`
	Healthy  bool         `json:"healthy"`
	Problem  string       `json:"problem,omitempty"`
	Members  []memberJSON `json:"members"`
	Clients  int64        `json:"clients"`
	Sessions struct {
		Online  int `json:"online"`
		Offline int `json:"offline"`
	} `json:"sessions"`
	Retained int         `json:"retained"`
	Store    []storeJSON `json:"store"`
	Mesh     meshJSON    `json:"mesh"`
}

// memberJSON is one node of the cluster as seen from here.
type memberJSON struct {
	Name   string `json:"name"`
	Self   bool   `json:"self,omitempty"`
	State  string `json:"state"` // up (this node, or a route to it is open)
	Remote string `json:"remote,omitempty"`
	RTT    string `json:"rtt,omitempty"`
}

// storeJSON is one replicated bucket: its replicas and whether they are current.
type storeJSON struct {
	Bucket   string        `json:"bucket,omitempty"`
	Stream   string        `json:"stream,omitempty"` // the session queue (sessions.durability replicated)
	Values   uint64        `json:"values"`
	Bytes    uint64        `json:"bytes"`
	Replicas int           `json:"replicas"`
	Leader   string        `json:"leader,omitempty"`
	Peers    []replicaJSON `json:"peers,omitempty"`
	Error    string        `json:"error,omitempty"`
}

type replicaJSON struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	Lag     uint64 `json:"lag,omitempty"`
}

// meshJSON is the interest this node holds in the mesh.
type meshJSON struct {
	Subscriptions     int64 `json:"nats_subscriptions"`
	Filters           int   `json:"filters"`
	SharedGroups      int   `json:"shared_groups"`
	MessagesIn        int64 `json:"messages_in"`
	MessagesOut       int64 `json:"messages_out"`
	SlowConsumerDrops int64 `json:"slow_consumer_drops"`
}

func (n *Node) apiCluster(w http.ResponseWriter, r *http.Request) {
	c := clusterJSON{Node: n.name, Cluster: n.cfg.Mesh.ClusterName, Members: n.members(),
		Clients: atomic.LoadInt64(&n.broker.Info.ClientsConnected), Retained: retainedCount(n.broker)}
	if err := n.healthy(); err != nil {
		c.Problem = err.Error()
	}
	c.Healthy = c.Problem == ""
	c.Sessions.Online, c.Sessions.Offline = n.sessions.Counts()
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	c.Store = n.storeStatus(ctx)
	if m := n.mesh; m != nil {
		m.mu.Lock()
		c.Mesh.Filters, c.Mesh.SharedGroups = len(m.plain), len(m.groups)
		m.mu.Unlock()
		c.Mesh.Subscriptions = m.nsubs.Load()
	}
	c.Mesh.MessagesIn, c.Mesh.MessagesOut = n.metrics.meshIn.Load(), n.metrics.meshOut.Load()
	c.Mesh.SlowConsumerDrops = n.metrics.drops.With("mesh_slow_consumer").Load()
	writeJSON(w, http.StatusOK, c)
}

// members returns this node and the nodes it has routes to.
func (n *Node) members() []memberJSON {
	out := []memberJSON{{Name: n.name, Self: true, State: "up"}}
	if n.ns == nil {
		return out
	}
	rz, err := n.ns.Routez(&server.RoutezOptions{})
	if err != nil {
		return out
	}
	seen := map[string]bool{n.name: true}
	for _, rt := range rz.Routes {
		if rt.RemoteName == "" || seen[rt.RemoteName] {
			continue // pooled routes repeat a peer
		}
		seen[rt.RemoteName] = true
		out = append(out, memberJSON{Name: rt.RemoteName, State: "up", Remote: net.JoinHostPort(rt.IP, strconv.Itoa(rt.Port)), RTT: rt.RTT})
	}
	slices.SortFunc(out[1:], func(a, b memberJSON) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// storeStatus reports the replicated buckets (retained messages, sessions,
// QoS 2 exchanges) and the session queue stream.
func (n *Node) storeStatus(ctx context.Context) []storeJSON {
	st := n.store()
	if st == nil {
		return []storeJSON{{Error: "store not open"}}
	}
	var out []storeJSON
	for _, kv := range []jetstream.KeyValue{st.Retained, st.Sessions, st.QoS2} {
		if kv == nil {
			continue
		}
		s := storeJSON{Bucket: kv.Bucket()}
		status, err := kv.Status(ctx)
		if err != nil {
			s.Error = err.Error()
			out = append(out, s)
			continue
		}
		s.Values, s.Bytes, s.Replicas = status.Values(), status.Bytes(), status.Config().Replicas
		if bs, ok := status.(*jetstream.KeyValueBucketStatus); ok {
			s.cluster(bs.StreamInfo().Cluster)
		}
		out = append(out, s)
	}
	if st.Queue != nil {
		s := storeJSON{Stream: st.Queue.CachedInfo().Config.Name}
		if info, err := st.Queue.Info(ctx); err != nil {
			s.Error = err.Error()
		} else {
			s.Values, s.Bytes, s.Replicas = info.State.Msgs, info.State.Bytes, info.Config.Replicas
			s.cluster(info.Cluster)
		}
		out = append(out, s)
	}
	return out
}

// cluster fills in the leader and replicas of a replicated stream.
func (s *storeJSON) cluster(ci *jetstream.ClusterInfo) {
	if ci == nil {
		return
	}
	s.Leader = ci.Leader
	for _, p := range ci.Replicas {
		s.Peers = append(s.Peers, replicaJSON{Name: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag})
	}
}
