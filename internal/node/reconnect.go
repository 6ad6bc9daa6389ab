package node

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/node/session"
)

// awaitEnded runs before mochi looks for an existing session of cl's client
// id (OnSessionEstablish). If the id's previous connection here is one whose
// session ends with it, it waits until mochi has finished ending it.
//
// mochi v2.7.9 ends such a session after OnDisconnect with
//
//	if expire && !cl.IsTakenOver() { ...; s.UnsubscribeClient(cl); s.Clients.Delete(cl.ID) }
//
// and a new connection with the same id sets the old one's taken-over flag
// in inheritClientSession, then adds itself with Clients.Add. The check and
// the flag are not atomic: when the old connection passes the check just
// before the new one sets the flag, its Clients.Delete(cl.ID), keyed by id,
// can come after the new connection's Clients.Add and remove the new client.
// Its subscriptions stay in the topic tree, it gets its SUBACKs, but mochi
// delivers nothing to an id it does not find in Clients. Ending the old
// connection completely first leaves inheritClientSession nothing to race
// with; the new session was not to inherit anything from it anyway.
func (h *hook) awaitEnded(cl *mqtt.Client) {
	if isMesh(cl) {
		return
	}
	clients := h.n.broker.Clients
	old, ok := clients.Get(cl.ID)
	if !ok || old == cl || isMesh(old) {
		return
	}
	if !old.Closed() {
		if !old.Properties.Clean {
			return // a persistent session: mochi hands it over and cleans nothing
		}
		// mochi would do this in inheritClientSession a moment later.
		_ = h.n.broker.DisconnectClient(old, packets.ErrSessionTakenOver) // [MQTT-3.1.4-3]
	}
	if !session.EndsWithConnection(old) {
		return
	}
	deadline := time.Now().Add(4 * h.n.cfg.Mesh.Timeout.D()) // OnDisconnect writes the registry within 3 timeouts
	for pause := 50 * time.Microsecond; time.Now().Before(deadline); pause = min(2*pause, 5*time.Millisecond) {
		if cur, ok := clients.Get(cl.ID); !ok || cur != old || old.IsTakenOver() {
			return
		}
		time.Sleep(pause)
	}
	h.n.log.Warn("previous connection of a clean session still ending: connection accepted anyway", "client_id", cl.ID)
}
