package node

import (
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/node/listen"
	"github.com/mqlb/mqlb/internal/node/session"
)

// sessionEnv is what the session layer gets of the node.
func (n *Node) sessionEnv() session.Env {
	c := n.cfg
	return session.Env{
		Broker: n.broker, Store: n.liveStore, Mesh: sessionMesh{n}, Log: n.log, Warn: n.warnEvery,
		MayRead:  func(cl *mqtt.Client, topic string) bool { return n.auth.OnACLCheck(cl, topic, false) },
		Drop:     n.metrics.droppedN,
		TookOver: func(result string) { n.metrics.takeovers.With(result).Add(1) },
		Cork:     func(c net.Conn) session.Cork { return listen.Cork(c) },
		Ctx:      n.ctx, WG: &n.wg,
		Node: n.name, Instance: n.instance, Cluster: c.Mesh.ClusterName, Timeout: c.Mesh.Timeout.D(),
		MaxExpiry: c.Sessions.MaxExpiry.D(), MaxOffline: c.Sessions.MaxOfflineMessages,
		Replicated: c.Sessions.Durability == "replicated",
	}
}

// sessionMesh is the mesh as the session layer sees it. The mesh and the
// control connection exist once the node has joined (Start); the session
// layer uses them only for clients, which come after.
type sessionMesh struct{ n *Node }

func (m sessionMesh) Subscribe(client, filter string) bool { return m.n.mesh.subscribe(client, filter) }
func (m sessionMesh) Unsubscribe(client, filter string)    { m.n.mesh.unsubscribe(client, filter) }
func (m sessionMesh) SyncInterest()                        { m.n.syncInterest() }
func (m sessionMesh) Control() *nats.Conn                  { return m.n.ctrl }
