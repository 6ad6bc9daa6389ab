package node

import (
	"context"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Drain takes the node's clients away before it stops (mqlb node on
// SIGTERM), as EMQX's node evacuation does, instead of dropping them all at
// once:
//
//   - new connections get CONNACK 0x9C use another server (3.1.1: 0x03
//     server unavailable): the load balancer tries another node, and its
//     MQTT health check marks this one down; /healthz answers 503;
//   - connected clients get DISCONNECT 0x9C (3.1.1: their connection
//     closed), rate per second (0: all at once), while the node stays in
//     the mesh: where they reconnect, this node hands their sessions over
//     (queued messages included, with memory durability too) instead of
//     the new node restoring them from the registry.
//
// It returns how many clients it sent away, once none is connected or at
// ctx's end; Close does the rest.
func (n *Node) Drain(ctx context.Context, rate float64) int {
	n.draining.Store(true)
	n.log.Info("draining: sending clients to other nodes", "rate", rate)
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		tick = t.C
	}
	sent := 0
	for {
		left := n.connected()
		if len(left) == 0 {
			n.log.Info("drained", "clients", sent)
			return sent
		}
		for _, cl := range left {
			if tick != nil {
				select {
				case <-tick:
				case <-ctx.Done():
					n.log.Warn("drain timed out: the remaining clients are disconnected at once", "sent", sent, "left", len(n.connected()))
					return sent
				}
			}
			if cl.Closed() {
				continue
			}
			if cl.Properties.ProtocolVersion == 5 {
				_ = n.broker.DisconnectClient(cl, packets.ErrUseAnotherServer)
			} else {
				cl.Stop(packets.ErrServerShuttingDown)
			}
			sent++
		}
		// those just disconnected leave mochi's table when their reads end
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return sent
		}
	}
}

// connected returns the node's connected network clients.
func (n *Node) connected() []*mqtt.Client {
	var out []*mqtt.Client
	for _, cl := range n.broker.Clients.GetAll() {
		if !isMesh(cl) && !cl.Closed() {
			out = append(out, cl)
		}
	}
	return out
}

// refuseDraining answers a CONNECT while the node drains (OnConnect):
// mochi closes without a CONNACK when OnConnect fails.
func refuseDraining(cl *mqtt.Client) error {
	code := packets.ErrUseAnotherServer // v5 0x9C: a load balancer tries another node
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.Err3ServerUnavailable
	}
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code.Code,
		Properties: packets.Properties{ReasonString: "node draining: use another server"}})
	return packets.ErrUseAnotherServer
}
