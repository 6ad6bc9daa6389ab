package mqttwire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func ptr(s string) *string { return &s }

// checkRewrite rewrites b (when we accept it) and checks the result: our
// parser sees the new fields and nothing else changed, and mochi-mqtt's
// decoder sees the same packet as in the original except for the rewritten
// fields, property by property. It reports whether b was rewritten.
func checkRewrite(t *testing.T, b []byte, id, user *string) bool {
	t.Helper()
	orig, n, err := parseConnect(b, true)
	if err != nil {
		return false
	}
	b = b[:n]
	out, err := RewriteConnect(nil, b, id, user)
	if err != nil {
		t.Fatalf("rewrite % x: %v", b, err)
	}
	got, gn, err := parseConnect(out, true)
	if err != nil || gn != len(out) {
		t.Fatalf("rewritten % x does not parse: n %d, %v", out, gn, err)
	}
	want := orig
	want.Size = len(out)
	if id != nil {
		want.ClientID = *id
	}
	if user != nil {
		want.Username, want.HasUsername = *user, true
	}
	if d := connectDiff(got, want); d != "" {
		t.Fatalf("rewritten % x:\n%s", out, d)
	}
	m0, m1 := mochiParse(b), mochiParse(out)
	if m0.v != m1.v {
		t.Fatalf("mochi: original %v (%v), rewritten %v (%v)", m0.v, m0.err, m1.v, m1.err)
	}
	if m0.v != accepted {
		return true
	}
	exp := m0.pk
	exp.FixedHeader.Remaining = m1.pk.FixedHeader.Remaining
	if id != nil {
		exp.Connect.ClientIdentifier = *id
	}
	if user != nil {
		exp.Connect.Username, exp.Connect.UsernameFlag = []byte(*user), true
	}
	if !reflect.DeepEqual(normMochi(exp), normMochi(m1.pk)) {
		t.Fatalf("mochi decodes the rewrite of % x differently:\n want %+v\n got  %+v", b, exp, m1.pk)
	}
	return true
}

// normMochi clears what differs only in how the slices were made.
func normMochi(pk packets.Packet) packets.Packet {
	if len(pk.Connect.Username) == 0 {
		pk.Connect.Username = nil
	}
	return pk
}

// TestRewriteConnectDifferential rewrites every seed packet (3.1, 3.1.1 and
// 5.0, with and without wills, v5 properties and will properties, user
// names and passwords) and compares with mochi-mqtt's decoder.
func TestRewriteConnectDifferential(t *testing.T) {
	cases := []struct {
		name     string
		id, user *string
	}{
		{"username", nil, ptr("device-cn")},
		{"client id", ptr("device-cn"), nil},
		{"both", ptr("a"), ptr("b")},
		{"empty username", nil, ptr("")},
		{"long", ptr(strings.Repeat("é", 300)), ptr(strings.Repeat("x", 20000))},
	}
	n := 0
	for _, s := range differentialCorpus() {
		for _, tc := range cases {
			if checkRewrite(t, s, tc.id, tc.user) {
				n++
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d packets rewritten", n)
	}
}

// TestRewriteConnectBytes checks one v5 packet byte for byte: the user name
// is inserted after the will, the password kept after it, the flag set.
func TestRewriteConnectBytes(t *testing.T) {
	in := []byte{
		0x10, 28, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', 5, // protocol name, level
		0x44 | 0x02, 0, 30, // flags: password, will, clean start; keep alive
		5, 0x11, 0, 0, 0, 60, // properties: session expiry 60
		0, 1, 'c', // client id "c"
		0,         // will properties
		0, 1, 't', // will topic
		0, 0, // will payload
		0, 1, 'p', // password
	}
	want := []byte{
		0x10, 31,
		0, 4, 'M', 'Q', 'T', 'T', 5,
		0xc6, 0, 30,
		5, 0x11, 0, 0, 0, 60,
		0, 1, 'c',
		0,
		0, 1, 't',
		0, 0,
		0, 1, 'u',
		0, 1, 'p',
	}
	got, err := RewriteConnect([]byte("x"), in, nil, ptr("u"))
	if err != nil || !bytes.Equal(got, append([]byte("x"), want...)) {
		t.Fatalf("got % x, %v\nwant    % x", got, err, want)
	}
	pw, ok, err := ConnectPassword(in)
	if string(pw) != "p" || !ok || err != nil {
		t.Fatalf("password %q %v %v", pw, ok, err)
	}
}

func TestRewriteConnectRefuses(t *testing.T) {
	good := AppendConnect(nil, &Connect{Version: V311, ClientID: "c"})
	for _, v := range []string{"a\x00b", "\xff", strings.Repeat("x", 65536), "a\x01b", "\ufffe"} {
		if _, err := RewriteConnect(nil, good, nil, ptr(v)); !errors.Is(err, ErrRewrite) {
			t.Errorf("username %.10q: %v, want ErrRewrite", v, err)
		}
	}
	if _, err := RewriteConnect(nil, append(good, 0xc0, 0), nil, ptr("u")); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing bytes: %v", err)
	}
	if _, err := RewriteConnect(nil, good[:len(good)-1], nil, ptr("u")); !errors.Is(err, ErrShort) {
		t.Errorf("short: %v", err)
	}
}

// FuzzRewriteConnect: never panic; every CONNECT we accept rewrites to one
// that we and mochi-mqtt decode as the original with the new fields.
func FuzzRewriteConnect(f *testing.F) {
	for _, s := range seedPackets() {
		f.Add(s, "cn", uint8(1))
	}
	f.Fuzz(func(t *testing.T, b []byte, v string, which uint8) {
		if !AllowedString(v) {
			if out, err := RewriteConnect(nil, b, ptr(v), nil); err == nil {
				t.Fatalf("%q, which ParseConnect refuses, written: % x", v, out)
			}
			return
		}
		var id, user *string
		if which&1 != 0 {
			user = &v
		}
		if which&2 != 0 {
			id = &v
		}
		checkRewrite(t, b, id, user)
		ConnectPassword(b)
	})
}

func BenchmarkRewriteConnect(b *testing.B) {
	pkt := AppendConnect(nil, &Connect{Version: V5, ClientID: "device-000042", CleanStart: true, KeepAlive: 30,
		Username: "someone", HasUsername: true, Password: []byte("secret"), HasPassword: true, SessionExpiry: 60,
		WillFlag: true, WillTopic: "wills/device-000042", WillPayload: []byte("offline")})
	user := "device-000042"
	dst := make([]byte, 0, 256)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := RewriteConnect(dst[:0], pkt, nil, &user); err != nil {
			b.Fatal(err)
		}
	}
}
