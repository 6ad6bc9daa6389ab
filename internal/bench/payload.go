package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderSize is the smallest payload: the stamp every message carries.
const HeaderSize = 24

// maxSeq bounds the sequence numbers a receiver accepts, so that a corrupt
// or foreign payload cannot make it allocate a huge bitmap.
const maxSeq = 1 << 34

// stamp is what a bench payload carries, big-endian, then zero padding:
//
//	0..3   run id (random per run: messages of another run are ignored)
//	4..7   publisher index
//	8..15  sequence number, from 0 per publisher
//	16..23 send time, Unix nanoseconds
type stamp struct {
	Run  uint32
	Pub  uint32
	Seq  uint64
	Sent int64
}

// appendPayload appends s padded with zeros to size bytes (at least HeaderSize).
func appendPayload(dst []byte, s stamp, size int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, s.Run)
	dst = binary.BigEndian.AppendUint32(dst, s.Pub)
	dst = binary.BigEndian.AppendUint64(dst, s.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.Sent))
	for range size - HeaderSize {
		dst = append(dst, 0)
	}
	return dst
}

var errForeign = errors.New("not a payload of this run")

// parsePayload reads the stamp of a payload sent by this run with pubs
// publishers; anything else is errForeign.
func parsePayload(b []byte, run uint32, pubs int) (stamp, error) {
	if len(b) < HeaderSize {
		return stamp{}, fmt.Errorf("%w: %d bytes", errForeign, len(b))
	}
	s := stamp{
		Run:  binary.BigEndian.Uint32(b[0:]),
		Pub:  binary.BigEndian.Uint32(b[4:]),
		Seq:  binary.BigEndian.Uint64(b[8:]),
		Sent: int64(binary.BigEndian.Uint64(b[16:])),
	}
	if s.Run != run || int(s.Pub) >= pubs || s.Seq >= maxSeq {
		return stamp{}, fmt.Errorf("%w: run %08x publisher %d seq %d", errForeign, s.Run, s.Pub, s.Seq)
	}
	return s, nil
}
