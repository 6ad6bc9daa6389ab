package inbound

import (
	"bytes"
	"io"
	"testing"
)

// stream is a net.Conn that returns data again and again, at most max bytes
// per Read (a socket's receive buffer).
type stream struct {
	chunks
	data []byte
	off  int
	max  int
}

func (s *stream) Read(p []byte) (int, error) {
	if s.off == len(s.data) {
		s.off = 0
	}
	n := copy(p[:min(len(p), s.max)], s.data[s.off:])
	s.off += n
	return n, nil
}

// BenchmarkConn reads 100-byte and 4 KiB publishes the way mochi does
// (through a 2 KiB bufio buffer's reads), with and without the guard.
func BenchmarkConn(b *testing.B) {
	for _, size := range []int{100, 4096} {
		pub := append([]byte{0x30}, byte(size-3)|0x80, byte((size-3)>>7))
		pub = append(pub, bytes.Repeat([]byte{'x'}, size-3)...)
		data := bytes.Repeat(pub, 64<<10/size) // whole packets only
		for _, guarded := range []bool{false, true} {
			name := map[bool]string{false: "raw", true: "guarded"}[guarded]
			b.Run(name+"/"+map[int]string{100: "100B", 4096: "4KiB"}[size], func(b *testing.B) {
				var r io.Reader = &stream{data: data, max: 16 << 10}
				if guarded {
					c := NewConn(&stream{data: data, max: 16 << 10}, Limits{Max: 1 << 20})
					c.started = true
					r = c
				}
				buf := make([]byte, 2048)
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					for n := 0; n < len(data); {
						k, err := r.Read(buf)
						if err != nil {
							b.Fatal(err)
						}
						n += k
					}
				}
			})
		}
	}
}
