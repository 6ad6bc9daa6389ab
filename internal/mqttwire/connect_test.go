package mqttwire

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// connectDiff describes how got differs from want, "" when it does not. An
// empty password or will payload equals a nil one.
func connectDiff(got, want Connect) string {
	norm := func(c Connect) Connect {
		if len(c.Password) == 0 {
			c.Password = nil
		}
		if len(c.WillPayload) == 0 {
			c.WillPayload = nil
		}
		return c
	}
	if !reflect.DeepEqual(norm(got), norm(want)) {
		return fmt.Sprintf("got  %+v\nwant %+v", got, want)
	}
	return ""
}

// checkParse checks one ParseConnect result against f.
func checkParse(t *testing.T, f fixture, c Connect, n int, err error) {
	t.Helper()
	if f.err == nil {
		want := f.want
		want.Size = len(f.raw)
		if err != nil || n != len(f.raw) {
			t.Fatalf("n, err = %d, %v; want %d, nil", n, err, len(f.raw))
		}
		if d := connectDiff(c, want); d != "" {
			t.Fatal(d)
		}
		return
	}
	if !errors.Is(err, f.err) || f.why != nil && !errors.Is(err, f.why) {
		t.Fatalf("err = %v; want %v (%v)", err, f.err, f.why)
	}
	if f.want.Version != 0 && c.Version != f.want.Version {
		t.Fatalf("Version = %d; want %d", c.Version, f.want.Version)
	}
	if d := connectDiff(c, Connect{Version: c.Version, Size: n}); d != "" {
		t.Fatalf("on error the Connect holds only Size and Version: %s", d)
	}
}

func TestParseConnectFixtures(t *testing.T) {
	for _, f := range allFixtures() {
		t.Run(f.name, func(t *testing.T) {
			c, n, err := ParseConnect(f.raw)
			checkParse(t, f, c, n, err)
			switch {
			case errors.Is(err, ErrShort), errors.Is(err, ErrNotConnect), errors.Is(err, errTooLong) && n == 0:
				if n != 0 {
					t.Errorf("n = %d on a header error; want 0", n)
				}
			case n != len(f.raw):
				t.Errorf("n = %d; want the packet's size %d", n, len(f.raw))
			}
		})
	}
}

// Bytes after the packet are the client's next packets: not part of it.
func TestParseConnectPipelined(t *testing.T) {
	next := AppendPingreq(AppendDisconnect(nil, V311, 0))
	for _, f := range validFixtures {
		c, n, err := ParseConnect(append(bytes.Clone(f.raw), next...))
		checkParse(t, f, c, n, err)
	}
}

// Every proper prefix of a valid packet asks for more bytes.
func TestParseConnectPrefixes(t *testing.T) {
	for _, f := range validFixtures {
		for i := range len(f.raw) {
			if _, n, err := ParseConnect(f.raw[:i]); err != ErrShort || n != 0 {
				t.Fatalf("%s[:%d]: n, err = %d, %v; want 0, ErrShort", f.name, i, n, err)
			}
		}
	}
}

// The strings must survive the caller reusing its buffer.
func TestParseConnectDoesNotAlias(t *testing.T) {
	f := validFixtures[2] // user name and password
	b := bytes.Clone(f.raw)
	c, _, err := ParseConnect(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if c.ClientID != f.want.ClientID || c.Username != f.want.Username {
		t.Fatalf("after clearing the buffer: %q %q", c.ClientID, c.Username)
	}
}

func TestParseConnectAllocs(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
		max  float64
	}{
		{"client id and user name", validFixtures[2].raw, 1},
		{"v5 properties and will", validFixtures[11].raw, 1},
		{"empty client id", validFixtures[4].raw, 0},
		{"HTTP", framingFixtures[0].raw, 0},
		{"five-byte length", framingFixtures[7].raw, 0},
	}
	for _, tt := range tests {
		allocs := testing.AllocsPerRun(100, func() { _, _, _ = ParseConnect(tt.raw) })
		if allocs > tt.max {
			t.Errorf("%s: %v allocations; want at most %v", tt.name, allocs, tt.max)
		}
	}
}

func TestErrorsWrap(t *testing.T) {
	_, _, err := ParseConnect(flagFixtures[11].raw) // invalid UTF-8 client id
	if !errors.Is(err, ErrMalformed) || !errors.Is(err, errBadUTF8) {
		t.Fatalf("err = %v; want ErrMalformed and errBadUTF8", err)
	}
	if want := "mqttwire: malformed packet: client identifier: invalid UTF-8 or U+0000"; err.Error() != want {
		t.Fatalf("err = %q; want %q", err, want)
	}
	_, _, err = ParseConnect(flagFixtures[2].raw) // level 6
	if want := `mqttwire: unsupported protocol version: "MQTT" level 6`; err == nil || err.Error() != want {
		t.Fatalf("err = %v; want %q", err, want)
	}
}
