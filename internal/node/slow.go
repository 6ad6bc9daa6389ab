package node

import "net/netip"

// slowConsumer is told of each client connection of listener closed at
// mqtt.max_queued_bytes (listen.Options.SlowConsumer): it counts it
// (mqlb_node_slow_consumers_total) and logs it, once every ten seconds at
// most (many can go at once: a fleet of clients that stop reading, a
// network partition towards them).
func (n *Node) slowConsumer(listener string) func(netip.AddrPort, int) {
	return func(remote netip.AddrPort, queued int) {
		n.metrics.slowConsumers.Add(1)
		n.warnEvery("client disconnected as a slow consumer: more than mqtt.max_queued_bytes waited to be written to it",
			"listener", listener, "remote", remote.String(), "queued_bytes", queued, "max_queued_bytes", n.cfg.MQTT.MaxQueuedBytes)
	}
}
