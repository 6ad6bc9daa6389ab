package mqttwire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// FuzzParseConnect: never panic; ParseConnect and the will-keeping parse
// agree; an accepted packet re-encodes to one that parses the same; and any
// disagreement with mochi-mqtt is a listed one.
func FuzzParseConnect(f *testing.F) {
	for _, s := range seedPackets() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, n, err := ParseConnect(b)
		full, fn, ferr := parseConnect(b, true)
		if n < 0 || n > len(b) || n != fn || errString(err) != errString(ferr) {
			t.Fatalf("n %d, %v; with will: n %d, %v", n, err, fn, ferr)
		}
		if errors.Is(err, ErrShort) && n != 0 {
			t.Fatalf("ErrShort with n = %d", n)
		}
		if err == nil {
			bare := full
			bare.WillTopic, bare.WillPayload = "", nil
			if d := connectDiff(c, bare); d != "" {
				t.Fatalf("keeping the will changed other fields: %s", d)
			}
			checkReencode(t, full)
		}
		if _, err := differential(b); err != nil {
			t.Fatal(err)
		}
	})
}

// checkReencode encodes c and parses it back.
func checkReencode(t *testing.T, c Connect) {
	t.Helper()
	enc := AppendConnect(nil, &c)
	got, n, err := parseConnect(enc, true)
	c.Size = len(enc)
	if err != nil || n != len(enc) {
		t.Fatalf("re-encoded % x: n %d, %v", enc, n, err)
	}
	if d := connectDiff(got, c); d != "" {
		t.Fatalf("re-encoded packet parses differently: %s", d)
	}
	if _, err := differential(enc); err != nil {
		t.Fatalf("re-encoded: %v", err)
	}
}

// fuzzReadMax is the limit FuzzReadConnectChunks passes.
const fuzzReadMax = 4096

// FuzzReadConnectChunks: ReadConnect over b split at points chosen by seed,
// into a scratch buffer whose capacity seed also chooses, decides what
// ParseConnect decides on the whole of b, and data is what was read.
func FuzzReadConnectChunks(f *testing.F) {
	for i, s := range seedPackets() {
		f.Add(s, uint64(i))
	}
	f.Fuzz(func(t *testing.T, b []byte, seed uint64) {
		r := &chunkReader{chunks: randomChunks(b, seed, 1+int(seed%32))}
		c, data, err := ReadConnect(r, make([]byte, 0, seed>>32%64), fuzzReadMax)
		if !bytes.Equal(data, r.produced) {
			t.Fatalf("data % x; read % x", data, r.produced)
		}
		pc, pn, perr := ParseConnect(b)
		want := expectedReadErr(b, perr)
		if want != nil && want != perr {
			// Too large: only the protocol level, read from at most the
			// smallest CONNECT's bytes.
			var v Connect
			if want == ErrTooLarge {
				v.Version, _ = PeekVersion(data)
				if len(data) > max(minConnectSize, int(seed>>32%64)) {
					t.Fatalf("too large: read %d bytes", len(data))
				}
			}
			if !errors.Is(err, want) || connectDiff(c, v) != "" {
				t.Fatalf("c, err = %+v, %v; want %+v, %v", c, err, v, want)
			}
			return
		}
		if errString(err) != errString(perr) || connectDiff(c, pc) != "" {
			t.Fatalf("ReadConnect: %+v, %v\nParseConnect: %+v, %v", c, err, pc, perr)
		}
		if pn > 0 && (len(data) < pn || !bytes.Equal(data[:pn], b[:pn])) {
			t.Fatalf("data % x does not hold the packet % x", data, b[:pn])
		}
	})
}

// expectedReadErr is what ReadConnect returns on b, given ParseConnect's err.
func expectedReadErr(b []byte, perr error) error {
	if size, err := ParseConnectHeader(b); err == nil && size > fuzzReadMax {
		return ErrTooLarge
	}
	if !errors.Is(perr, ErrShort) {
		return perr
	}
	if len(b) == 0 {
		return io.EOF
	}
	return io.ErrUnexpectedEOF
}

// FuzzConnack: the CONNACK decoders (used on the brokers' replies by health
// checks and by the proxy before it commits a client) never panic, agree with
// each other, and ReadConnack returns exactly the bytes it read.
func FuzzConnack(f *testing.F) {
	for _, v := range []byte{V31, V311, V5} {
		for _, code := range []byte{0, 3, 5, 0x80, 0x88} {
			f.Add(v, AppendConnack(nil, v, false, code))
		}
		f.Add(v, AppendConnack(nil, v, true, 0))
	}
	f.Add(byte(V5), []byte{0x20, 0x08, 0x00, 0x00, 0x05, 0x21, 0x00, 0x0a, 0x22, 0x00}) // properties
	f.Add(byte(V311), []byte{0x20, 0x80, 0x80, 0x80, 0x80, 0x01})                       // 5-byte length
	f.Add(byte(V311), []byte{0x20, 0x02, 0x02, 0x00})                                   // reserved flag
	f.Fuzz(func(t *testing.T, v byte, b []byte) {
		v = []byte{V31, V311, V5}[v%3]
		sp, code, n, err := ParseConnack(b, v)
		if n < 0 || n > len(b) {
			t.Fatalf("n %d of %d bytes, %v", n, len(b), err)
		}
		rp, rerr := ReadConnack(iotest.HalfReader(bytes.NewReader(b)), v, nil)
		if rerr == nil && !bytes.Equal(rp.Data, b[:len(rp.Data)]) {
			t.Fatalf("ReadConnack returned % x of % x", rp.Data, b)
		}
		if rerr == nil && rp.Size == 0 { // AUTH
			if v != V5 || b[0] != authByte {
				t.Fatalf("ReadConnack: AUTH from % x to version %d", b, v)
			}
			return
		}
		switch {
		case errors.Is(err, ErrShort):
			if rerr == nil {
				t.Fatalf("ParseConnack: short; ReadConnack: accepted")
			}
		case (err == nil) != (rerr == nil):
			t.Fatalf("ParseConnack: %v; ReadConnack: %v", err, rerr)
		case err == nil:
			if sp != rp.SessionPresent || code != rp.Code || n != rp.Size {
				t.Fatalf("ParseConnack: %v %#x %d; ReadConnack: %+v", sp, code, n, rp)
			}
			enc := AppendConnack(nil, v, sp, code)
			if esp, ecode, en, err := ParseConnack(enc, v); err != nil || en != len(enc) || esp != sp || ecode != code {
				t.Fatalf("re-encoded % x: %v %#x, %d bytes, %v; was %v %#x", enc, esp, ecode, en, err, sp, code)
			}
		}
	})
}
