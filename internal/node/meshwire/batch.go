package meshwire

import (
	"encoding/binary"
	"errors"
)

// A queue batch is several publishes to one topic stored as one message of
// the session queue stream (sessions.durability replicated): the stream,
// its raft log and its interest bookkeeping then work once per batch, not
// once per publish. The stream message carries the header BatchHeader
// (the item count); its data is the items one after the other:
//
//	string   the publisher's client id (for NoLocal)
//	bytes    the envelope (AppendEnvelope)
//
// Strings and bytes are a uvarint length and the bytes. A stream message
// without the header is one publish: its data is the envelope, the
// publisher's client id is in the header Mqlb-From.

// BatchHeader is the header that marks a queue batch.
const BatchHeader = "Mqlb-Batch"

// MaxBatch is the most publishes one queue batch holds: readers address a
// publish by its stream sequence and its index in the batch, in 8 bits.
const MaxBatch = 256

// BatchItem is one publish in a queue batch. Data aliases the batch.
type BatchItem struct {
	From string
	Data []byte // the envelope
}

var errBatch = errors.New("meshwire: malformed queue batch")

// AppendBatchItem encodes one item after b.
func AppendBatchItem(b []byte, from string, envelope []byte) []byte {
	b = appendString(b, from)
	b = binary.AppendUvarint(b, uint64(len(envelope)))
	return append(b, envelope...)
}

// SplitBatch parses what AppendBatchItem wrote, count items (from the
// header); it fails unless data holds exactly that many, 1 to MaxBatch.
func SplitBatch(data []byte, count int) ([]BatchItem, error) {
	if count < 1 || count > MaxBatch {
		return nil, errBatch
	}
	out := make([]BatchItem, 0, count)
	r := reader{b: data}
	for len(r.b) > 0 && r.err == nil && len(out) < count {
		from := r.string()
		n := r.count()
		if r.err != nil {
			break
		}
		out = append(out, BatchItem{From: from, Data: r.b[:n:n]})
		r.b = r.b[n:]
	}
	if r.err != nil || len(r.b) > 0 || len(out) != count {
		return nil, errBatch
	}
	return out, nil
}

// A mesh batch is several envelopes to one subject sent as one NATS
// message of the mesh: the byte MeshBatchMarker (never an envelope's first,
// its version), a uvarint count, then the items as in a queue batch, each
// with an empty client id.
const MeshBatchMarker = 0xB1

// AppendMeshBatch starts a mesh batch of n envelopes after b; the items
// follow, each AppendBatchItem(b, "", envelope).
func AppendMeshBatch(b []byte, n int) []byte {
	return binary.AppendUvarint(append(b, MeshBatchMarker), uint64(n))
}

// SplitMeshBatch returns the envelopes of a mesh batch; ok is false for data
// that is not one (a single envelope); an error for one that does not parse.
func SplitMeshBatch(data []byte) (envelopes []BatchItem, ok bool, err error) {
	if len(data) == 0 || data[0] != MeshBatchMarker {
		return nil, false, nil
	}
	count, n := binary.Uvarint(data[1:])
	if n <= 0 || count > MaxBatch {
		return nil, true, errBatch
	}
	items, err := SplitBatch(data[1+n:], int(count))
	for _, it := range items {
		if it.From != "" {
			return nil, true, errBatch
		}
	}
	return items, true, err
}
