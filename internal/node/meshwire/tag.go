package meshwire

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"
)

// MsgID identifies one message cluster-wide: the node instance that
// accepted it (Origin) and that instance's sequence number for it (Seq,
// from 1). Copies of one message have equal ids.
type MsgID struct {
	Origin string
	Seq    uint64
}

// IsZero reports whether id is the zero id, which no message has.
func (id MsgID) IsZero() bool { return id == MsgID{} }

// String formats id as "origin/seq"; the zero id is "".
func (id MsgID) String() string {
	if id.IsZero() {
		return ""
	}
	return id.Origin + "/" + strconv.FormatUint(id.Seq, 10)
}

// MarshalText is String: a session handover names its messages so.
func (id MsgID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses what MarshalText wrote ("" is the zero id). The
// sequence follows the last '/', so an origin may hold any bytes.
func (id *MsgID) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*id = MsgID{}
		return nil
	}
	s := string(text)
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return errMsgID
	}
	seq, err := strconv.ParseUint(s[i+1:], 10, 64)
	if err != nil {
		return errMsgID
	}
	*id = MsgID{Origin: s[:i], Seq: seq}
	return nil
}

var errMsgID = errors.New("meshwire: malformed message id")

// Tag is what a PUBLISH packet carries through the local broker: its
// message id and, on a copy injected for one member of one shared
// subscription, that member.
type Tag struct {
	ID     MsgID
	Member Member // zero unless injected for one shared subscription member
}

// Member is one client in one shared subscription
// ("$share/{group}/{filter}").
type Member struct{ Client, Filter string }

// A packet's tag rides in pk.Connect.ClientIdentifier, a field PUBLISH
// packets never use (no client can set it on a PUBLISH); mochi copies it
// along with the packet into subscribers' inflight queues, so a queued
// message still knows its id when a session is handed over to another
// node. It is encoded once, where the tag is set, and decoded where it is
// read; the string never leaves the process:
//
//	string   origin
//	uvarint  seq
//	string   member client  } only on a copy for one shared member
//	string   member filter  }
//
// Strings are a uvarint length and the bytes. The zero Tag is "".

// SetTag stores t in pk; the zero Tag leaves pk untagged.
func SetTag(pk *packets.Packet, t Tag) { pk.Connect.ClientIdentifier = encodeTag(t) }

// TagOf returns pk's tag, or false when pk carries none (or anything that
// is not one).
func TagOf(pk *packets.Packet) (Tag, bool) { return decodeTag(pk.Connect.ClientIdentifier) }

// IDOf returns the message id of pk's tag (zero when pk has none).
func IDOf(pk *packets.Packet) MsgID {
	tag, _ := TagOf(pk)
	return tag.ID
}

func encodeTag(t Tag) string {
	if t == (Tag{}) {
		return ""
	}
	var b strings.Builder
	b.Grow(2*binary.MaxVarintLen64 + len(t.ID.Origin) + len(t.Member.Client) + len(t.Member.Filter) + 2)
	writeString(&b, t.ID.Origin)
	writeUvarint(&b, t.ID.Seq)
	if t.Member != (Member{}) {
		writeString(&b, t.Member.Client)
		writeString(&b, t.Member.Filter)
	}
	return b.String()
}

func writeUvarint(b *strings.Builder, v uint64) {
	var buf [binary.MaxVarintLen64]byte
	b.Write(binary.AppendUvarint(buf[:0], v))
}

func writeString(b *strings.Builder, s string) {
	writeUvarint(b, uint64(len(s)))
	b.WriteString(s)
}

// decodeTag parses what encodeTag wrote, all of it, and never a zero Tag;
// the strings it returns share s's memory.
func decodeTag(s string) (Tag, bool) {
	if s == "" {
		return Tag{}, false
	}
	r := tagReader{s: s, ok: true}
	var t Tag
	t.ID.Origin = r.string()
	t.ID.Seq = r.uvarint()
	if r.ok && r.s != "" {
		t.Member.Client = r.string()
		t.Member.Filter = r.string()
	}
	if !r.ok || r.s != "" || t == (Tag{}) {
		return Tag{}, false // the zero Tag is no tag, however spelled
	}
	return t, true
}

// tagReader consumes a tag; after the first failure ok stays false and
// zero values follow.
type tagReader struct {
	s  string
	ok bool
}

func (r *tagReader) uvarint() uint64 {
	if !r.ok {
		return 0
	}
	v, n := binary.Uvarint([]byte(r.s[:min(len(r.s), binary.MaxVarintLen64)]))
	if n <= 0 {
		r.ok = false
		return 0
	}
	r.s = r.s[n:]
	return v
}

func (r *tagReader) string() string {
	n := r.uvarint()
	if !r.ok || n > uint64(len(r.s)) {
		r.ok = false
		return ""
	}
	s := r.s[:n]
	r.s = r.s[n:]
	return s
}
