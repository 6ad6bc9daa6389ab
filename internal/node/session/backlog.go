package session

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// WaitBacklog returns once fewer than max of cl's publishes are being
// stored or waiting to be handed back to mochi. Each holds one unit of
// mochi's receive quota until then, and mochi disconnects a client whose
// quota runs out ("receive maximum exceeded"). An MQTT 5 client is told the
// Receive Maximum and keeps to it; a 3.1.1 client has no such limit and may
// pipeline as many QoS 1 publishes as it likes: its connection's reader
// waits here instead (TCP pushes back on the client), as mosquitto stops
// reading a client it cannot keep up with. The wait ends when the client
// goes too (its publishes settle within the store's timeout).
func (d *Durable) WaitBacklog(cl *mqtt.Client, max int) {
	if !d.On() {
		return
	}
	v, ok := d.chains.Load(cl)
	if !ok {
		return
	}
	hb := v.(*handBacks)
	hb.mu.Lock()
	defer hb.mu.Unlock()
	for len(hb.queue) >= max {
		if hb.room == nil {
			hb.room = sync.NewCond(&hb.mu)
		}
		hb.room.Wait()
	}
}
