package mqttwire

import (
	"io"
	"testing"
)

func BenchmarkParseConnect(b *testing.B) {
	for _, bm := range []struct {
		name string
		raw  []byte
	}{
		{"v311-small", validFixtures[2].raw}, // client id, user name, password
		{"v5-props-will", validFixtures[11].raw},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bm.raw)))
			for b.Loop() {
				if _, _, err := ParseConnect(bm.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// replayReader returns the same chunks on every pass, without allocating.
type replayReader struct {
	chunks [][]byte
	i, off int
}

func (r *replayReader) reset() { r.i, r.off = 0, 0 }

func (r *replayReader) Read(p []byte) (int, error) {
	if r.i == len(r.chunks) {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[r.i][r.off:])
	if r.off += n; r.off == len(r.chunks[r.i]) {
		r.i, r.off = r.i+1, 0
	}
	return n, nil
}

func BenchmarkReadConnect(b *testing.B) {
	raw := validFixtures[2].raw
	third := len(raw) / 3
	for _, bm := range []struct {
		name   string
		chunks [][]byte
	}{
		{"1chunk", [][]byte{raw}},
		{"3chunks", [][]byte{raw[:third], raw[third : 2*third], raw[2*third:]}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			r := &replayReader{chunks: bm.chunks}
			buf := make([]byte, 0, 4096) // as from a sync.Pool
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				r.reset()
				if _, _, err := ReadConnect(r, buf, 1<<18); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
