package mqttwire

// framingFixtures are rejected on the fixed header or on lengths.
var framingFixtures = []fixture{
	{
		name: "HTTP request",
		raw:  []byte("GET / HTTP/1.1\r\nHost: mqlb\r\n\r\n"),
		err:  ErrNotConnect,
	},
	{
		name: "TLS ClientHello",
		raw: []byte{
			0x16,       // TLS record: handshake
			0x03, 0x01, // record version TLS 1.0
			0x00, 0xc8, // record length 200
			0x01,             // handshake type: ClientHello
			0x00, 0x00, 0xc4, // handshake length
			0x03, 0x03, // client version TLS 1.2
		},
		err: ErrNotConnect,
	},
	{
		name: "PROXY protocol v1 header",
		raw:  []byte("PROXY TCP4 192.0.2.1 192.0.2.2 51000 1883\r\n"),
		err:  ErrNotConnect,
	},
	{
		name: "PUBLISH first",
		raw: []byte{
			0x30, 0x05, // fixed header: PUBLISH QoS 0, remaining length 5
			0x00, 0x01, 'a', // topic "a"
			'h', 'i', // payload
		},
		err: ErrNotConnect,
	},
	{
		name: "PINGREQ first",
		raw:  []byte{0xc0, 0x00}, // fixed header: PINGREQ
		err:  ErrNotConnect,
	},
	{
		name: "CONNECT with fixed-header flags set",
		raw: []byte{
			0x11, 15, // fixed header: CONNECT but flags 0001 [MQTT-2.2.2-2]
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x03, 'z', 'e', 'n', // client identifier "zen"
		},
		err: ErrNotConnect,
	},
	{
		name: "nothing",
		raw:  []byte{},
		err:  ErrShort,
	},
	{
		name: "five-byte remaining length",
		raw: []byte{
			0x10,                   // fixed header: CONNECT
			0x80, 0x80, 0x80, 0x80, // remaining length: a fourth continuation bit
			0x01, // a fifth length byte (v3.1.1 §2.2.3, v5 §1.5.5 allow four)
		},
		err: ErrMalformed, why: errTooLong,
	},
	{
		name: "too large for the limit (ReadConnect)",
		raw: []byte{
			0x10,             // fixed header: CONNECT
			0x80, 0x80, 0x10, // remaining length 262144: more than fixtureReadMax
			0x00, 0x04, 'M', 'Q', 'T', 'T', // the start of a body that never ends
		},
		err: ErrShort, // ParseConnect has no limit; ReadConnect says ErrTooLarge
	},
	{
		name: "truncated packet",
		raw: []byte{
			0x10, 15, // fixed header: CONNECT, remaining length 15
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x03, 'z', 'e', // client identifier "zen" cut short: the stream ends
		},
		err: ErrShort,
	},
	{
		name: "remaining length zero",
		raw:  []byte{0x10, 0x00}, // fixed header: CONNECT, remaining length 0
		err:  ErrMalformed, why: errPastEnd,
	},
	{
		name: "protocol name past the end",
		raw: []byte{
			0x10, 3, // fixed header: CONNECT, remaining length 3
			0x00, 0x04, 'M', // protocol name: 4 bytes announced, 1 present
		},
		err: ErrMalformed, why: errPastEnd,
	},
	{
		name: "protocol level missing",
		raw: []byte{
			0x10, 6, // fixed header: CONNECT, remaining length 6
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT", then nothing
		},
		err: ErrMalformed, why: errPastEnd,
	},
	{
		name: "trailing byte inside the packet",
		raw: []byte{
			0x10, 16, // fixed header: CONNECT, remaining length 16
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x03, 'z', 'e', 'n', // client identifier "zen"
			0x00, // counted in the remaining length, belongs to no field
		},
		err: ErrMalformed, why: errTrailing,
	},
	{
		name: "client identifier past the end",
		raw: []byte{
			0x10, 15, // fixed header: CONNECT, remaining length 15
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x0a, 'z', 'e', 'n', // client identifier: 10 bytes announced, 3 present
		},
		err: ErrMalformed, why: errPastEnd,
	},
	{
		name: "user name flag without user name",
		raw: []byte{
			0x10, 15, // fixed header: CONNECT, remaining length 15
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x82,       // connect flags: user name, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x03, 'z', 'e', 'n', // client identifier "zen", then no user name [MQTT-3.1.2-19]
		},
		err: ErrMalformed, why: errPastEnd,
	},
	{
		name: "password flag without password",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0xc2,       // connect flags: user name, password, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x03, 'z', 'e', 'n', // client identifier "zen"
			0x00, 0x01, 'u', // user name "u", then no password [MQTT-3.1.2-21]
		},
		err: ErrMalformed, why: errPastEnd,
	},
	{
		name: "will flag without will payload",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x06,       // connect flags: will, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x03, 'z', 'e', 'n', // client identifier "zen"
			0x00, 0x01, 't', // will topic "t", then no will payload [MQTT-3.1.2-9]
		},
		err: ErrMalformed, why: errPastEnd,
	},
}
