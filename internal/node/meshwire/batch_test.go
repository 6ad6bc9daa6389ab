package meshwire

import (
	"bytes"
	"testing"
)

func TestBatchRoundTrip(t *testing.T) {
	var b []byte
	want := []BatchItem{{From: "a", Data: AppendEnvelope(nil, sampleEnvelope())}, {From: "", Data: []byte{}}, {From: "c\r\n", Data: []byte("x")}}
	for _, it := range want {
		b = AppendBatchItem(b, it.From, it.Data)
	}
	got, err := SplitBatch(b, len(want))
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i].From != want[i].From || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("item %d: got %q %x, want %q %x", i, got[i].From, got[i].Data, want[i].From, want[i].Data)
		}
	}
	for _, count := range []int{0, 2, 4, MaxBatch + 1} {
		if _, err := SplitBatch(b, count); err == nil {
			t.Errorf("count %d for 3 items: no error", count)
		}
	}
	if _, err := SplitBatch(b[:len(b)-1], 3); err == nil {
		t.Error("truncated batch: no error")
	}
}

func FuzzBatch(f *testing.F) {
	f.Add(AppendBatchItem(AppendBatchItem(nil, "a", AppendEnvelope(nil, sampleEnvelope())), "b", []byte{1}), 2)
	f.Add([]byte{0, 0}, 1)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 1)
	f.Fuzz(func(t *testing.T, data []byte, count int) {
		items, err := SplitBatch(data, count)
		if err != nil {
			return
		}
		var again []byte
		for _, it := range items {
			again = AppendBatchItem(again, it.From, it.Data)
		}
		back, err := SplitBatch(again, count) // (varints may be non-minimal in data)
		if err != nil {
			t.Fatalf("re-encoded batch does not split: %v", err)
		}
		for i := range items {
			if back[i].From != items[i].From || !bytes.Equal(back[i].Data, items[i].Data) {
				t.Fatalf("re-encoding a split batch changed item %d", i)
			}
		}
	})
}
