package meshwire

import (
	"encoding/json"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

var sampleTags = []Tag{
	{ID: MsgID{Origin: "0123abcd", Seq: 1}},
	{ID: MsgID{Origin: "0123abcd", Seq: 1<<64 - 1}},
	{ID: MsgID{Origin: "a/b\x00c", Seq: 300}},
	{ID: MsgID{Origin: "0123abcd", Seq: 7}, Member: Member{Client: "c\x00/1", Filter: "$share/g/a/#"}},
	{ID: MsgID{Origin: "0123abcd", Seq: 7}, Member: Member{Filter: "$share/g/#"}}, // an empty client id
	{ID: MsgID{Origin: "", Seq: 0}, Member: Member{Client: "c", Filter: "$share/g/#"}},
}

func TestTagRoundTrip(t *testing.T) {
	for _, want := range sampleTags {
		var pk packets.Packet
		SetTag(&pk, want)
		got, ok := TagOf(&pk)
		if !ok || got != want {
			t.Errorf("TagOf(SetTag(%+v)) = %+v, %v", want, got, ok)
		}
		if cp := pk.Copy(false); cp.Connect.ClientIdentifier != pk.Connect.ClientIdentifier {
			t.Error("mochi's packet copy lost the tag")
		}
	}
}

func TestUntagged(t *testing.T) {
	var pk packets.Packet
	if _, ok := TagOf(&pk); ok {
		t.Error("a fresh packet has a tag")
	}
	SetTag(&pk, sampleTags[0])
	SetTag(&pk, Tag{})
	if tag, ok := TagOf(&pk); ok || pk.Connect.ClientIdentifier != "" {
		t.Errorf("the zero Tag left %+v in the packet", tag)
	}
	for _, garbage := range []string{"x", "\x05abc", "\x01a", "\x01a\x01\x01", "\x01a\x01\x00\x00\x00", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"} {
		pk.Connect.ClientIdentifier = garbage
		if tag, ok := TagOf(&pk); ok || tag != (Tag{}) {
			t.Errorf("TagOf(%q) = %+v, %v", garbage, tag, ok)
		}
	}
}

// FuzzTag checks that decoding never panics, and that whatever decodes
// encodes back to the same tag.
func FuzzTag(f *testing.F) {
	for _, t := range sampleTags {
		f.Add(encodeTag(t))
	}
	f.Add("\x01a\x01\x00\x00")
	f.Add("\x01a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02")
	f.Fuzz(func(t *testing.T, s string) {
		tag, ok := decodeTag(s)
		if !ok {
			if tag != (Tag{}) {
				t.Fatalf("failed decode of %q returned %+v", s, tag)
			}
			return
		}
		if again, ok := decodeTag(encodeTag(tag)); !ok || again != tag {
			t.Fatalf("%q: decoded %+v, re-encoded and decoded %+v, %v", s, tag, again, ok)
		}
	})
}

func TestMsgIDText(t *testing.T) {
	for _, tc := range []struct {
		id   MsgID
		text string
	}{
		{MsgID{Origin: "0123abcd", Seq: 42}, "0123abcd/42"},
		{MsgID{Origin: "a/b", Seq: 1}, "a/b/1"},
		{MsgID{Origin: "", Seq: 5}, "/5"},
		{MsgID{}, ""},
	} {
		if got := tc.id.String(); got != tc.text {
			t.Errorf("%+v.String() = %q, want %q", tc.id, got, tc.text)
		}
		var back MsgID
		if err := back.UnmarshalText([]byte(tc.text)); err != nil || back != tc.id {
			t.Errorf("UnmarshalText(%q) = %+v, %v", tc.text, back, err)
		}
	}
	for _, bad := range []string{"abc", "a/", "a/-1", "a/x", "a/18446744073709551616"} {
		var id MsgID
		if err := id.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) = %+v, want an error", bad, id)
		}
	}
}

// TestMsgIDJSON pins the form a session handover carries, which nodes of
// other versions read: "origin/seq", left out when zero.
func TestMsgIDJSON(t *testing.T) {
	type msg struct {
		Tag MsgID `json:"tag,omitzero"`
	}
	for _, tc := range []struct {
		m    msg
		json string
	}{
		{msg{MsgID{Origin: "ab12", Seq: 9}}, `{"tag":"ab12/9"}`},
		{msg{}, `{}`},
	} {
		data, err := json.Marshal(tc.m)
		if err != nil || string(data) != tc.json {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", tc.m, data, err, tc.json)
		}
		var back msg
		if err := json.Unmarshal(data, &back); err != nil || back != tc.m {
			t.Errorf("Unmarshal(%s) = %+v, %v", data, back, err)
		}
	}
	var back msg
	if err := json.Unmarshal([]byte(`{"tag":""}`), &back); err != nil || !back.Tag.IsZero() {
		t.Errorf(`an empty tag reads as %+v, %v`, back, err)
	}
}
