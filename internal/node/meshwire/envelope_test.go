package meshwire

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func sampleEnvelope() *Envelope {
	return &Envelope{
		ID: MsgID{Origin: "abcd", Seq: 1 << 40}, Topic: "a/b/ü", QoS: 2, Retain: true, HasExpiry: true, Expiry: 299,
		Props: packets.Properties{
			PayloadFormat: 1, PayloadFormatFlag: true, ContentType: "text/plain", ResponseTopic: "r/t",
			CorrelationData: []byte{0, 1}, User: []packets.UserProperty{{Key: "k", Val: "v\r\n"}, {Key: "", Val: ""}},
		},
		Handled: []string{"$share/g/a/#"},
		Payload: []byte("payload\x00"),
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, e := range []*Envelope{sampleEnvelope(), {Topic: "t"}, {Topic: "t", Payload: []byte{}}} {
		got, err := DecodeEnvelope(AppendEnvelope(nil, e))
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Payload) == 0 {
			e.Payload = got.Payload // empty and nil payloads are the same message
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, e)
		}
	}
}

func FuzzEnvelope(f *testing.F) {
	f.Add(AppendEnvelope(nil, sampleEnvelope()))
	f.Add([]byte{envelopeVersion, 0})
	f.Add([]byte{envelopeVersion, 3, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEnvelope(data)
		if err != nil {
			return
		}
		again, err := DecodeEnvelope(AppendEnvelope(nil, e))
		if err != nil || again.Topic != e.Topic || !bytes.Equal(again.Payload, e.Payload) || again.ID != e.ID {
			t.Fatalf("re-encoding a decoded envelope changed it: %v", err)
		}
	})
}
