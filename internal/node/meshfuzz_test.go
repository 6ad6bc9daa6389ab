package node

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/node/meshwire"
)

// FuzzMeshMessage feeds a peer's bytes to the mesh's receiving side —
// envelope decoding, de-duplication, shared-group handling and injection
// into the broker, with local subscribers (plain and shared, connected or
// not) to deliver to. Nothing a peer sends may panic the node.
func FuzzMeshMessage(f *testing.F) {
	sample := &meshwire.Envelope{
		ID: meshwire.MsgID{Origin: "abcd", Seq: 1 << 40}, Topic: "a/b/ü", QoS: 2, Retain: true, HasExpiry: true, Expiry: 299,
		Props: packets.Properties{
			PayloadFormat: 1, PayloadFormatFlag: true, ContentType: "text/plain", ResponseTopic: "r/t",
			CorrelationData: []byte{0, 1}, User: []packets.UserProperty{{Key: "k", Val: "v\r\n"}, {Key: "", Val: ""}},
		},
		Handled: []string{"$share/g/a/#"},
		Payload: []byte("payload\x00"),
	}
	f.Add(meshwire.AppendEnvelope(nil, sample))
	sample.Retain, sample.QoS, sample.Topic = true, 2, "$SYS/x"
	f.Add(meshwire.AppendEnvelope(nil, sample))
	sample.Topic, sample.Handled = "a/#/+", []string{"$share/g/#"}
	f.Add(meshwire.AppendEnvelope(nil, sample))
	sample.Topic = ""
	f.Add(meshwire.AppendEnvelope(nil, sample))
	n := loneNode(f, "fuzz")
	n.mesh = newMesh(n, nil, nil)
	for _, id := range []string{"fuzz-v5", "fuzz-v3"} {
		cl := n.broker.NewClient(nil, "tcp", id, false)
		cl.Properties.ProtocolVersion = map[string]byte{"fuzz-v5": 5, "fuzz-v3": 4}[id]
		n.broker.Clients.Add(cl)
		for _, filter := range []string{"#", "$share/g/#", "$SYS/#", "+/+/+"} {
			sub := packets.Subscription{Filter: filter, Qos: 2, RetainAsPublished: true}
			n.broker.Topics.Subscribe(id, sub)
			cl.State.Subscriptions.Add(filter, sub)
		}
	}
	mb := member{filter: "$share/g/#", client: "fuzz-v5"}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := &nats.Msg{Subject: "x", Data: data}
		n.mesh.onPlain(msg)
		n.mesh.onShared(mb, msg)
	})
}
