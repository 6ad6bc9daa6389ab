package bench

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestPayloadRoundTrip(t *testing.T) {
	now := time.Now().UnixNano()
	for _, size := range []int{HeaderSize, 25, 256, 4096} {
		in := stamp{Run: 0xdeadbeef, Pub: 3, Seq: 1<<33 + 5, Sent: now}
		b := appendPayload([]byte("prefix"), in, size)
		if len(b) != len("prefix")+size {
			t.Fatalf("size %d: payload is %d bytes", size, len(b)-len("prefix"))
		}
		if !bytes.Equal(b[len("prefix")+HeaderSize:], make([]byte, size-HeaderSize)) {
			t.Errorf("size %d: padding is not zeros", size)
		}
		out, err := parsePayload(b[len("prefix"):], in.Run, 4)
		if err != nil || out != in {
			t.Errorf("size %d: round trip gave %+v, %v; want %+v", size, out, err, in)
		}
	}
}

func TestPayloadForeign(t *testing.T) {
	good := appendPayload(nil, stamp{Run: 7, Pub: 1, Seq: 2, Sent: 3}, 64)
	for name, tc := range map[string]struct {
		b    []byte
		run  uint32
		pubs int
	}{
		"other run":         {good, 8, 2},
		"publisher unknown": {good, 7, 1},
		"short":             {good[:HeaderSize-1], 7, 2},
		"empty":             {nil, 7, 2},
		"absurd sequence":   {appendPayload(nil, stamp{Run: 7, Seq: maxSeq}, 64), 7, 2},
	} {
		if _, err := parsePayload(tc.b, tc.run, tc.pubs); !errors.Is(err, errForeign) {
			t.Errorf("%s: err = %v, want errForeign", name, err)
		}
	}
}
