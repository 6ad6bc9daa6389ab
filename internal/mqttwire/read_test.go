package mqttwire

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// chunkReader returns its chunks one Read at a time (a Read asking for less
// gets the rest of a chunk on the next call), then io.EOF. It records what it
// produced.
type chunkReader struct {
	chunks   [][]byte
	produced []byte
	reads    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	r.reads++
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	r.produced = append(r.produced, p[:n]...)
	return n, nil
}

// randomChunks splits b at random points chosen by seed, in chunks of at
// most maxChunk bytes.
func randomChunks(b []byte, seed uint64, maxChunk int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var chunks [][]byte
	for len(b) > 0 {
		n := 1 + rng.IntN(min(len(b), maxChunk))
		chunks = append(chunks, bytes.Clone(b[:n]))
		b = b[n:]
	}
	return chunks
}

// checkRead checks a ReadConnect result for fixture f against ParseConnect's
// and against what the reader produced.
func checkRead(t *testing.T, f fixture, c Connect, data, produced []byte, err error) {
	t.Helper()
	if !bytes.Equal(data, produced) {
		t.Fatalf("data = % x; the reader produced % x", data, produced)
	}
	want := f.readErr()
	if want == ErrShort || want == ErrTooLarge || want == io.EOF || want == io.ErrUnexpectedEOF {
		if !errors.Is(err, want) || connectDiff(c, Connect{}) != "" {
			t.Fatalf("c, err = %+v, %v; want zero, %v", c, err, want)
		}
		return
	}
	pc, pn, perr := ParseConnect(f.raw)
	if errString(err) != errString(perr) || connectDiff(c, pc) != "" {
		t.Fatalf("ReadConnect: %+v, %v\nParseConnect: %+v, %v", c, err, pc, perr)
	}
	if pn > 0 && !bytes.Equal(data[:pn], f.raw[:pn]) {
		t.Fatalf("data does not start with the packet")
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestReadConnectSplits(t *testing.T) {
	for _, f := range allFixtures() {
		t.Run(f.name, func(t *testing.T) {
			for _, buf := range [][]byte{nil, make([]byte, 0, 4096), make([]byte, 0, 3)} {
				whole := &chunkReader{chunks: [][]byte{bytes.Clone(f.raw)}}
				c, data, err := ReadConnect(whole, buf, fixtureReadMax)
				checkRead(t, f, c, data, whole.produced, err)

				bytewise := &chunkReader{chunks: [][]byte{bytes.Clone(f.raw)}}
				c, data, err = ReadConnect(iotest.OneByteReader(bytewise), buf, fixtureReadMax)
				checkRead(t, f, c, data, bytewise.produced, err)

				for seed := range uint64(20) {
					split := &chunkReader{chunks: randomChunks(f.raw, seed, 8)}
					c, data, err = ReadConnect(split, buf, fixtureReadMax)
					checkRead(t, f, c, data, split.produced, err)
				}
			}
		})
	}
}

// Pipelined packets after the CONNECT come back in data, as far as reads
// brought them in; reading byte by byte stops exactly at the CONNECT's end.
func TestReadConnectPipelined(t *testing.T) {
	next := AppendDisconnect(AppendPingreq(nil), V311, 0)
	for _, f := range validFixtures {
		stream := append(bytes.Clone(f.raw), next...)
		r := &chunkReader{chunks: [][]byte{bytes.Clone(stream)}}
		c, data, err := ReadConnect(r, make([]byte, 0, 4096), 0)
		checkRead(t, f, c, data, r.produced, err)
		if !bytes.Equal(data, stream) {
			t.Fatalf("%s: data = % x; want the whole stream % x", f.name, data, stream)
		}
		r = &chunkReader{chunks: [][]byte{bytes.Clone(stream)}}
		c, data, err = ReadConnect(iotest.OneByteReader(r), nil, 0)
		checkRead(t, f, c, data, r.produced, err)
		if !bytes.Equal(data, f.raw) {
			t.Fatalf("%s: byte by byte, data = % x; want just the CONNECT", f.name, data)
		}
		for seed := range uint64(20) {
			r = &chunkReader{chunks: randomChunks(stream, seed, 8)}
			c, data, err = ReadConnect(r, nil, 0)
			checkRead(t, f, c, data, r.produced, err)
			if len(data) < len(f.raw) || !bytes.HasPrefix(stream, data) {
				t.Fatalf("%s: data = % x; want a prefix of the stream holding the CONNECT", f.name, data)
			}
		}
	}
}
