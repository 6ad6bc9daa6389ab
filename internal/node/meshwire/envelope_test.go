package meshwire

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"slices"
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
		Sent:    1_800_000_000_123,
		Payload: []byte("payload\x00"),
	}
}

// TestEnvelopeSentReadByOlderNodes: Sent travels as one more entry of the
// handled list, starting with U+0000, so a node that reads every entry as a
// shared filter served elsewhere (as nodes did before Sent) gets one no
// shared filter can equal, and the same topic, id and payload.
func TestEnvelopeSentReadByOlderNodes(t *testing.T) {
	e := sampleEnvelope()
	older := *e
	older.Sent = 0
	older.Handled = append(slices.Clone(e.Handled), "\x00t"+string(binary.AppendUvarint(nil, uint64(e.Sent))))
	if !bytes.Equal(AppendEnvelope(nil, e), AppendEnvelope(nil, &older)) {
		t.Fatal("Sent is not encoded as a handled entry of its own")
	}
	// Entries starting with U+0000 that this version does not know are skipped.
	older.Handled = append(older.Handled, "\x00z-later")
	got, err := DecodeEnvelope(AppendEnvelope(nil, &older))
	if err != nil {
		t.Fatal(err)
	}
	if got.Sent != e.Sent || !slices.Equal(got.Handled, e.Handled) {
		t.Fatalf("decoded Sent %d, handled %q; want %d, %q", got.Sent, got.Handled, e.Sent, e.Handled)
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
