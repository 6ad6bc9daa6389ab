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

func TestMeshBatchRoundTrip(t *testing.T) {
	one := AppendEnvelope(nil, sampleEnvelope())
	if _, ok, err := SplitMeshBatch(one); ok || err != nil {
		t.Fatalf("a single envelope: batch %v, %v", ok, err)
	}
	b := AppendMeshBatch(nil, 2)
	b = AppendBatchItem(b, "", one)
	b = AppendBatchItem(b, "", []byte("x"))
	items, ok, err := SplitMeshBatch(b)
	if !ok || err != nil || len(items) != 2 || !bytes.Equal(items[0].Data, one) || string(items[1].Data) != "x" {
		t.Fatalf("batch: %v %v %+v", ok, err, items)
	}
	for _, bad := range [][]byte{b[:len(b)-1], AppendMeshBatch(nil, 0), AppendMeshBatch(nil, MaxBatch+1), {MeshBatchMarker}, append(AppendMeshBatch(nil, 1), 0xff)} {
		if _, ok, err := SplitMeshBatch(bad); !ok || err == nil {
			t.Errorf("%x: batch %v, error %v; want a malformed batch", bad, ok, err)
		}
	}
}

func FuzzMeshBatch(f *testing.F) {
	f.Add(AppendBatchItem(AppendBatchItem(AppendMeshBatch(nil, 2), "", AppendEnvelope(nil, sampleEnvelope())), "", []byte{1}))
	f.Add(AppendEnvelope(nil, sampleEnvelope()))
	f.Add([]byte{MeshBatchMarker, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		items, ok, err := SplitMeshBatch(data)
		if !ok || err != nil {
			return
		}
		again := AppendMeshBatch(nil, len(items))
		for _, it := range items {
			if it.From != "" {
				t.Fatalf("a mesh batch item with a client id: %q", it.From)
			}
			again = AppendBatchItem(again, "", it.Data)
		}
		back, _, err := SplitMeshBatch(again)
		if err != nil || len(back) != len(items) {
			t.Fatalf("re-encoded batch does not split: %v", err)
		}
	})
}
