package mqttwire

import (
	"bytes"
	"io"
	"slices"
)

// fixture is one annotated packet, in the style of mochi-mqtt's
// packets/tpackets.go, and what ParseConnect makes of it.
type fixture struct {
	name string
	raw  []byte
	want Connect // fields of a valid packet (Size is len(raw)); Version for ErrUnsupportedVersion
	err  error   // the sentinel ParseConnect returns; nil when valid
	why  error   // the problem inside ErrMalformed (errBadUTF8, ...), when set
}

// fixtureReadMax is the limit the ReadConnect tests pass.
const fixtureReadMax = 64 << 10

// readErr is the sentinel ReadConnect returns for f.raw read to its end with
// a limit of fixtureReadMax.
func (f fixture) readErr() error {
	if f.err != ErrShort {
		return f.err
	}
	if size, err := ParseConnectHeader(f.raw); err == nil && size > fixtureReadMax {
		return ErrTooLarge
	}
	if len(f.raw) == 0 {
		return io.EOF
	}
	return io.ErrUnexpectedEOF
}

func allFixtures() []fixture {
	return slices.Concat(validFixtures, framingFixtures, flagFixtures, v5Fixtures, charFixtures)
}

var validFixtures = []fixture{
	{
		name: "v3.1 clean session",
		raw: []byte{
			0x10, 21, // fixed header: CONNECT, remaining length 21
			0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name "MQIsdp"
			0x03,       // protocol level 3 (MQTT 3.1)
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x07, 'm', 'q', 'l', 'b', '-', '3', '1', // client identifier "mqlb-31"
		},
		want: Connect{Version: V31, CleanStart: true, KeepAlive: 60, ClientID: "mqlb-31"},
	},
	{
		name: "v3.1.1 minimal",
		raw: []byte{
			0x10, 15, // fixed header: CONNECT, remaining length 15
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4 (MQTT 3.1.1)
			0x00,       // connect flags: none
			0x00, 0x1e, // keep alive 30 s
			0x00, 0x03, 'z', 'e', 'n', // client identifier "zen"
		},
		want: Connect{Version: V311, KeepAlive: 30, ClientID: "zen"},
	},
	{
		name: "v3.1.1 user name and password",
		raw: []byte{
			0x10, 32, // fixed header: CONNECT, remaining length 32
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0xc2,       // connect flags: user name, password, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x05, 'd', 'e', 'v', '-', '1', // client identifier "dev-1"
			0x00, 0x05, 'a', 'l', 'i', 'c', 'e', // user name "alice"
			0x00, 0x06, 's', '3', 'c', 'r', 'e', 't', // password "s3cret"
		},
		want: Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "dev-1",
			Username: "alice", HasUsername: true, HasPassword: true},
	},
	{
		name: "v3.1.1 will QoS 1 retained, user name",
		raw: []byte{
			0x10, 51, // fixed header: CONNECT, remaining length 51
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0xae,       // connect flags: user name, will retain, will QoS 1, will, clean session
			0x00, 0x78, // keep alive 120 s
			0x00, 0x08, 's', 'e', 'n', 's', 'o', 'r', '-', '7', // client identifier "sensor-7"
			0x00, 0x0f, 's', 't', 'a', 't', 'u', 's', '/', 's', 'e', 'n', 's', 'o', 'r', '-', '7', // will topic
			0x00, 0x07, 'o', 'f', 'f', 'l', 'i', 'n', 'e', // will payload "offline"
			0x00, 0x03, 'b', 'o', 'b', // user name "bob"
		},
		want: Connect{Version: V311, CleanStart: true, KeepAlive: 120, ClientID: "sensor-7",
			Username: "bob", HasUsername: true, WillFlag: true, WillQoS: 1, WillRetain: true},
	},
	{
		name: "v3.1.1 empty client identifier",
		raw: []byte{
			0x10, 12, // fixed header: CONNECT, remaining length 12
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x00, // keep alive 0 (off)
			0x00, 0x00, // client identifier "" (the broker assigns one)
		},
		want: Connect{Version: V311, CleanStart: true},
	},
	{
		name: "v3.1.1 zero-length will payload",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x06,       // connect flags: will (QoS 0), clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'w', // client identifier "w"
			0x00, 0x01, 't', // will topic "t"
			0x00, 0x00, // will payload: empty, allowed (binary data of 0..65535 bytes)
		},
		want: Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "w", WillFlag: true},
	},
	{
		name: "v3.1.1 zero-length password",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0xc0,       // connect flags: user name, password
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'p', // client identifier "p"
			0x00, 0x01, 'u', // user name "u"
			0x00, 0x00, // password: empty, allowed (binary data of 0..65535 bytes)
		},
		want: Connect{Version: V311, KeepAlive: 60, ClientID: "p", Username: "u",
			HasUsername: true, HasPassword: true},
	},
	{
		name: "v3.1.1 BOM and multi-byte UTF-8 in client identifier",
		raw: []byte{
			0x10, 19, // fixed header: CONNECT, remaining length 19
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x07, // client identifier length 7
			0xef, 0xbb, 0xbf, 'i', 'd', 0xc3, 0xa9, // U+FEFF kept [MQTT-1.5.3-3], "id", "é"
		},
		want: Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "\ufeffidé"},
	},
	{
		name: "v3.1.1 two-byte remaining length",
		raw: append([]byte{
			0x10, 0xd4, 0x01, // fixed header: CONNECT, remaining length 212 (two bytes)
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0xc8, // client identifier length 200, then 200 × 'x'
		}, bytes.Repeat([]byte{'x'}, 200)...),
		want: Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: string(bytes.Repeat([]byte{'x'}, 200))},
	},
	{
		name: "v5 no properties",
		raw: []byte{
			0x10, 15, // fixed header: CONNECT, remaining length 15
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5 (MQTT 5.0)
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,                 // property length 0
			0x00, 0x02, 'v', '5', // client identifier "v5"
		},
		want: Connect{Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "v5"},
	},
	{
		name: "v5 every CONNECT property",
		raw: []byte{
			0x10, 67, // fixed header: CONNECT, remaining length 67
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			49,                           // property length 49
			0x11, 0x00, 0x00, 0x0e, 0x10, // session expiry interval 3600 s
			0x21, 0x00, 0x14, // receive maximum 20
			0x27, 0x00, 0x01, 0x00, 0x00, // maximum packet size 65536
			0x22, 0x00, 0x0a, // topic alias maximum 10
			0x19, 0x01, // request response information 1
			0x17, 0x00, // request problem information 0
			0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', // user property k=v
			0x26, 0x00, 0x01, 'k', 0x00, 0x02, 'v', '2', // user property k=v2 (may repeat)
			0x15, 0x00, 0x05, 'S', 'C', 'R', 'A', 'M', // authentication method "SCRAM"
			0x16, 0x00, 0x03, 0x01, 0x02, 0x03, // authentication data
			0x00, 0x05, 'p', 'r', 'o', 'p', 's', // client identifier "props"
		},
		want: Connect{Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "props", SessionExpiry: 3600},
	},
	{
		name: "v5 will with properties, user name and password",
		raw: []byte{
			0x10, 102, // fixed header: CONNECT, remaining length 102
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0xd6,       // connect flags: user name, password, will QoS 2, will, clean start
			0x00, 0x0a, // keep alive 10 s
			5,                            // property length 5
			0x11, 0x00, 0x00, 0x00, 0x3c, // session expiry interval 60 s
			0x00, 0x06, 'c', 'a', 'r', '-', '4', '2', // client identifier "car-42"
			45,                           // will property length 45
			0x18, 0x00, 0x00, 0x00, 0x05, // will delay interval 5 s
			0x01, 0x01, // payload format indicator: UTF-8
			0x02, 0x00, 0x00, 0x0e, 0x10, // message expiry interval 3600 s
			0x03, 0x00, 0x0a, 't', 'e', 'x', 't', '/', 'p', 'l', 'a', 'i', 'n', // content type
			0x08, 0x00, 0x05, 'r', 'e', 'p', 'l', 'y', // response topic "reply"
			0x09, 0x00, 0x02, 0xbe, 0xef, // correlation data
			0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b', // user property a=b
			0x00, 0x0c, 'c', 'a', 'r', 's', '/', '4', '2', '/', 'g', 'o', 'n', 'e', // will topic
			0x00, 0x03, 'b', 'y', 'e', // will payload "bye"
			0x00, 0x05, 'c', 'a', 'r', 'o', 'l', // user name "carol"
			0x00, 0x04, 0x01, 0x02, 0x03, 0x04, // password (binary)
		},
		want: Connect{Version: V5, CleanStart: true, KeepAlive: 10, ClientID: "car-42", Username: "carol",
			HasUsername: true, HasPassword: true, WillFlag: true, WillQoS: 2, SessionExpiry: 60},
	},
	{
		name: "v5 password without user name",
		raw: []byte{
			0x10, 20, // fixed header: CONNECT, remaining length 20
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x42,       // connect flags: password (allowed alone in v5, §3.1.2.9), clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,                 // property length 0
			0x00, 0x02, 'n', 'p', // client identifier "np"
			0x00, 0x03, 't', 'o', 'k', // password "tok"
		},
		want: Connect{Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "np", HasPassword: true},
	},
	{
		name: "v5 empty client identifier, longest session expiry",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x00,       // connect flags: none
			0x00, 0x3c, // keep alive 60 s
			5,                            // property length 5
			0x11, 0xff, 0xff, 0xff, 0xff, // session expiry interval: never expires
			0x00, 0x00, // client identifier "" (the server assigns one)
		},
		want: Connect{Version: V5, KeepAlive: 60, SessionExpiry: 0xffffffff},
	},
}
