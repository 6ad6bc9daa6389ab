package mqttwire

import (
	"errors"
	"testing"
)

// charFixtures hold code points a string SHOULD NOT hold (v3.1.1 §1.5.3,
// v5 §1.5.4): refused with ErrDisallowedChar, answered with a CONNACK.
// mosquitto closes on each of them without one.
var charFixtures = []fixture{
	{
		name: "client identifier with U+0001",
		raw: []byte{
			0x10, 15, // fixed header: CONNECT, remaining length 15
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x03, 'a', 0x01, 'b', // client identifier "a\x01b": a control character
		},
		err: ErrDisallowedChar,
	},
	{
		name: "client identifier with U+007F",
		raw: []byte{
			0x10, 13, // fixed header: CONNECT, remaining length 13
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 0x7f, // client identifier: DEL
		},
		err: ErrDisallowedChar,
	},
	{
		name: "v5 client identifier with U+0085",
		raw: []byte{
			0x10, 15, // fixed header: CONNECT, remaining length 15
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,                   // properties: none
			0x00, 0x02, 0xc2, 0x85, // client identifier: NEL, a C1 control character
		},
		err: ErrDisallowedChar,
	},
	{
		name: "v5 client identifier with U+FFFF",
		raw: []byte{
			0x10, 16, // fixed header: CONNECT, remaining length 16
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,                         // properties: none
			0x00, 0x03, 0xef, 0xbf, 0xbf, // client identifier: U+FFFF, a non-character
		},
		err: ErrDisallowedChar,
	},
	{
		name: "client identifier with U+1FFFE",
		raw: []byte{
			0x10, 16, // fixed header: CONNECT, remaining length 16
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x04, 0xf0, 0x9f, 0xbf, 0xbe, // client identifier: U+1FFFE, a non-character
		},
		err: ErrDisallowedChar,
	},
	{
		name: "user name with a tab",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x82,       // connect flags: user name, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
			0x00, 0x03, 'a', '\t', 'b', // user name "a\tb": a control character
		},
		err: ErrDisallowedChar,
	},
	{
		name: "v5 will topic with U+001B",
		raw: []byte{
			0x10, 23, // fixed header: CONNECT, remaining length 23
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x06,       // connect flags: will, clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,            // properties: none
			0x00, 0x01, 'c', // client identifier "c"
			0x00,                       // will properties: none
			0x00, 0x03, 'a', '/', 0x1b, // will topic "a/\x1b": ESC
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrDisallowedChar,
	},
	{
		name: "will topic with U+FDD0",
		raw: []byte{
			0x10, 22, // fixed header: CONNECT, remaining length 22
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x06,       // connect flags: will, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
			0x00, 0x04, 'a', 0xef, 0xb7, 0x90, // will topic "a\ufdd0": a non-character
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrDisallowedChar,
	},
	{
		name: "v5 user property value with U+0001",
		raw: []byte{
			0x10, 21, // fixed header: CONNECT, remaining length 21
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			0x07,                                    // properties: 7 bytes
			0x26, 0x00, 0x01, 'k', 0x00, 0x01, 0x01, // user property "k" = "\x01"
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrDisallowedChar,
	},
	{
		name: "v5 authentication method with U+009F",
		raw: []byte{
			0x10, 19, // fixed header: CONNECT, remaining length 19
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			0x05,                         // properties: 5 bytes
			0x15, 0x00, 0x02, 0xc2, 0x9f, // authentication method: APC, a C1 control character
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrDisallowedChar,
	},
	{
		name: "v5 will content type with a newline",
		raw: []byte{
			0x10, 26, // fixed header: CONNECT, remaining length 26
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x06,       // connect flags: will, clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,            // properties: none
			0x00, 0x01, 'c', // client identifier "c"
			0x05,                        // will properties: 5 bytes
			0x03, 0x00, 0x02, 'a', '\n', // content type "a\n"
			0x00, 0x01, 't', // will topic "t"
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrDisallowedChar,
	},
	{
		name: "v5 user property key with U+FFFE after a malformed field: malformed first",
		raw: []byte{
			0x10, 22, // fixed header: CONNECT, remaining length 22
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			0x08,                                           // properties: 8 bytes
			0x26, 0x00, 0x03, 0xef, 0xbf, 0xbe, 0x00, 0x00, // user property U+FFFE = ""
			0x00, 0x01, 0x00, // client identifier with U+0000 [MQTT-1.5.4-2]
		},
		err: ErrMalformed, why: errBadUTF8,
	},
	{
		name: "control character and a malformed field: malformed first",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x82,       // connect flags: user name, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 0x01, // client identifier "\x01"
			0x00, 0x03, 'a', 0x00, 'b', // user name with U+0000 [MQTT-1.5.3-2]
		},
		err: ErrMalformed, why: errBadUTF8,
	},
	{
		name: "U+00A0 and U+FFFD are allowed",
		raw: []byte{
			0x10, 17, // fixed header: CONNECT, remaining length 17
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x05, 0xc2, 0xa0, 0xef, 0xbf, 0xbd, // client identifier: no-break space, replacement character
		},
		want: Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "\u00a0\ufffd"},
	},
}

// TestDisallowedCharRefusal: each string has its CONNACK.
func TestDisallowedCharRefusal(t *testing.T) {
	want := map[string]Refusal{
		"client identifier with U+0001":        RefuseIdentifier,
		"client identifier with U+007F":        RefuseIdentifier,
		"v5 client identifier with U+0085":     RefuseIdentifier,
		"v5 client identifier with U+FFFF":     RefuseIdentifier,
		"client identifier with U+1FFFE":       RefuseIdentifier,
		"user name with a tab":                 RefuseUsername,
		"v5 will topic with U+001B":            RefuseWillTopic,
		"will topic with U+FDD0":               RefuseWillTopic,
		"v5 user property value with U+0001":   RefuseMalformed,
		"v5 authentication method with U+009F": RefuseMalformed,
		"v5 will content type with a newline":  RefuseMalformed,
	}
	for _, f := range charFixtures {
		_, _, err := ParseConnect(f.raw)
		why, ok := RefusalOf(err)
		if w, refused := want[f.name]; ok != refused || why != w {
			t.Errorf("%s: RefusalOf(%v) = %v, %v; want %v, %v", f.name, err, why, ok, w, refused)
		}
	}
	if _, ok := RefusalOf(errors.Join(ErrMalformed)); ok {
		t.Error("RefusalOf(ErrMalformed) ok")
	}
}

func TestAllowedString(t *testing.T) {
	for s, want := range map[string]bool{
		"device-1": true, "": true, "nœud €": true, "\u00a0\u00ff\ufffd\U0010fffd": true,
		"a\x00": false, "a\x01": false, "\x1f": false, "\x7f": false, "\u0080": false, "\u009f": false,
		"\ufdd0": false, "\ufdef": false, "\ufffe": false, "\U0010ffff": false, "\xff": false,
	} {
		if got := AllowedString(s); got != want {
			t.Errorf("AllowedString(%q) = %v; want %v", s, got, want)
		}
	}
}
