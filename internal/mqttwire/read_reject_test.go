package mqttwire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/iotest"
)

// strictReader returns its chunks and fails the test if read past them: the
// decoder must have stopped before.
type strictReader struct {
	t      *testing.T
	chunks [][]byte
	read   int // bytes returned
}

func (r *strictReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		r.t.Errorf("Read called after %d bytes: the decoder should have stopped", r.read)
		return 0, errors.New("strictReader: read past the end")
	}
	n := copy(p, r.chunks[0])
	if r.chunks[0] = r.chunks[0][n:]; len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	r.read += n
	return n, nil
}

// endless is a body that never ends; it counts what was taken from it.
type endless struct{ taken int }

func (e *endless) Read(p []byte) (int, error) {
	e.taken += len(p)
	return len(p), nil
}

func TestReadConnectStopsAtFirstByte(t *testing.T) {
	for _, f := range framingFixtures[:5] { // HTTP, TLS, PROXY, PUBLISH, PINGREQ
		r := &strictReader{t: t, chunks: [][]byte{f.raw[:1]}}
		_, data, err := ReadConnect(r, nil, fixtureReadMax)
		if err != ErrNotConnect || r.read != 1 || !bytes.Equal(data, f.raw[:1]) {
			t.Errorf("%s: err = %v after %d bytes, data % x; want ErrNotConnect after 1", f.name, err, r.read, data)
		}
		// Given everything in one Read, it still does not call Read again.
		r = &strictReader{t: t, chunks: [][]byte{f.raw}}
		if _, _, err := ReadConnect(r, make([]byte, 0, 4096), fixtureReadMax); err != ErrNotConnect {
			t.Errorf("%s: err = %v; want ErrNotConnect", f.name, err)
		}
	}
}

func TestReadConnectTooLargeFromHeader(t *testing.T) {
	header := []byte{0x10, 0xff, 0xff, 0x7f} // remaining length 2,097,151
	body := &endless{}
	_, data, err := ReadConnect(iotest.OneByteReader(io.MultiReader(bytes.NewReader(header), body)), nil, 4096)
	// The body's zero bytes name no protocol: known after its length.
	if !errors.Is(err, ErrTooLarge) || body.taken != 2 || !bytes.Equal(data, append(header, 0, 0)) {
		t.Fatalf("err = %v, %d body bytes read, data % x; want ErrTooLarge after the header and a name's length", err, body.taken, data)
	}
	// Read in bulk, only what one Read returned is taken: at most the
	// smallest CONNECT into a buffer of its own, the caller's capacity else.
	for _, buf := range [][]byte{nil, make([]byte, 0, 64)} {
		body = &endless{}
		_, data, err = ReadConnect(io.MultiReader(bytes.NewReader(header), body), buf, 4096)
		if !errors.Is(err, ErrTooLarge) || len(data) > max(minConnectSize, cap(buf)) {
			t.Fatalf("cap %d: err = %v after %d bytes; want ErrTooLarge within one read", cap(buf), err, len(data))
		}
	}
}

func TestReadConnectMalformedLength(t *testing.T) {
	r := &strictReader{t: t, chunks: [][]byte{{0x10}, {0x80}, {0x80}, {0x80}, {0x80}}}
	_, data, err := ReadConnect(r, nil, 0)
	if !errors.Is(err, ErrMalformed) || len(data) != 5 {
		t.Fatalf("err = %v after %d bytes; want ErrMalformed after 5", err, len(data))
	}
}

// timeoutReader returns some bytes, then a deadline error.
type timeoutReader struct{ b []byte }

func (r *timeoutReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// dataEOF returns io.EOF in the same call as its last bytes.
type dataEOF struct{ b []byte }

func (r *dataEOF) Read(p []byte) (int, error) {
	n := copy(p, r.b)
	if r.b = r.b[n:]; len(r.b) == 0 {
		return n, io.EOF
	}
	return n, nil
}

type stalled struct{}

func (stalled) Read([]byte) (int, error) { return 0, nil }

func TestReadConnectReadErrors(t *testing.T) {
	raw := validFixtures[1].raw
	tests := []struct {
		name string
		r    io.Reader
		want error
	}{
		{"nothing", bytes.NewReader(nil), io.EOF},
		{"EOF mid-header", bytes.NewReader(raw[:1]), io.ErrUnexpectedEOF},
		{"EOF mid-body", bytes.NewReader(raw[:9]), io.ErrUnexpectedEOF},
		{"deadline", &timeoutReader{b: raw[:5]}, os.ErrDeadlineExceeded},
		{"stalled", stalled{}, io.ErrNoProgress},
		{"bytes with EOF", &dataEOF{b: raw}, nil},
	}
	for _, tt := range tests {
		_, _, err := ReadConnect(tt.r, nil, 0)
		if err != tt.want {
			t.Errorf("%s: err = %v; want %v", tt.name, err, tt.want)
		}
	}
	_, _, err := ReadConnect(&timeoutReader{}, nil, 0)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("err = %v; want the reader's timeout, as is", err)
	}
}

// ReadConnect fills the caller's buffer and grows only when it must.
func TestReadConnectBuffer(t *testing.T) {
	f := validFixtures[3]
	buf := make([]byte, 0, 4096)
	_, data, err := ReadConnect(bytes.NewReader(f.raw), buf, 0)
	if err != nil || &data[0] != &buf[:1][0] {
		t.Fatalf("err = %v; data should be read into the caller's buffer", err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		_, _, _ = ReadConnect(bytes.NewReader(f.raw), buf, 0)
	})
	if allocs > 2 { // the strings and the bytes.Reader
		t.Errorf("%v allocations with a big enough buffer; want at most 2", allocs)
	}
	for _, f := range validFixtures {
		_, data, err := ReadConnect(bytes.NewReader(f.raw), nil, 0)
		if err != nil || cap(data) > len(f.raw) {
			t.Errorf("%s: err = %v, cap %d; want no more capacity than the packet's %d", f.name, err, cap(data), len(f.raw))
		}
	}
	big := AppendConnect(nil, &Connect{Version: V311, ClientID: "big", HasUsername: true, Username: string(bytes.Repeat([]byte{'u'}, 60000))})
	c, data, err := ReadConnect(iotest.HalfReader(bytes.NewReader(big)), nil, 0)
	if err != nil || len(c.Username) != 60000 || cap(data) > len(big) {
		t.Errorf("60 kB CONNECT: err = %v, cap %d; want cap at most %d", err, cap(data), len(big))
	}
}

// TestReadConnectTooLargeTellsVersion: a CONNECT over the limit is refused
// as soon as its protocol level is known, so that a v5 client can be
// answered 0x95; no byte past the level is read.
func TestReadConnectTooLargeTellsVersion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prefix []byte // fixed header, protocol name and level
		want   byte
	}{
		{"v5", []byte{0x10, 0x80, 0x80, 0x01, 0, 4, 'M', 'Q', 'T', 'T', 5}, V5},
		{"v3.1.1", []byte{0x10, 0x80, 0x08, 0, 4, 'M', 'Q', 'T', 'T', 4}, V311},
		{"v3.1", []byte{0x10, 0xff, 0xff, 0xff, 0x7f, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3}, V31},
		{"other name", []byte{0x10, 0x80, 0x08, 0, 4, 'M', 'Q', 'T', 'X'}, 0},
	} {
		// One byte per Read: it stops at the level.
		r := &strictReader{t: t}
		for i := range tc.prefix {
			r.chunks = append(r.chunks, tc.prefix[i:i+1])
		}
		c, data, err := ReadConnect(r, nil, 1024)
		if !errors.Is(err, ErrTooLarge) || c.Version != tc.want || !bytes.Equal(data, tc.prefix) {
			t.Errorf("%s: version %d, err %v, data % x; want %d, ErrTooLarge, % x", tc.name, c.Version, err, data, tc.want, tc.prefix)
		}
		// Ended before the level: too large all the same, level unknown.
		short := tc.prefix[:len(tc.prefix)-1]
		c, _, err = ReadConnect(bytes.NewReader(short), nil, 1024)
		if !errors.Is(err, ErrTooLarge) || c.Version != 0 {
			t.Errorf("%s, cut before the level: version %d, err %v; want 0, ErrTooLarge", tc.name, c.Version, err)
		}
	}
}
