package mqttwire

// v5Fixtures are rejected on MQTT 5.0 properties (v5 §2.2.2, §3.1.2.11,
// §3.1.3.2).
var v5Fixtures = []fixture{
	{
		name: "v5 duplicate session expiry",
		raw: []byte{
			0x10, 24, // fixed header: CONNECT, remaining length 24
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			10,                           // property length 10
			0x11, 0x00, 0x00, 0x00, 0x01, // session expiry interval 1 s
			0x11, 0x00, 0x00, 0x00, 0x02, // session expiry interval again (§3.1.2.11.2)
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errDuplicate,
	},
	{
		name: "v5 unknown property: maximum QoS",
		raw: []byte{
			0x10, 16, // fixed header: CONNECT, remaining length 16
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			2,          // property length 2
			0x24, 0x01, // maximum QoS: a CONNACK property
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errUnknownProperty,
	},
	{
		name: "v5 will property among CONNECT properties",
		raw: []byte{
			0x10, 16, // fixed header: CONNECT, remaining length 16
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			2,          // property length 2
			0x01, 0x01, // payload format indicator: only in will properties
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errUnknownProperty,
	},
	{
		name: "v5 receive maximum 0",
		raw: []byte{
			0x10, 17, // fixed header: CONNECT, remaining length 17
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			3,                // property length 3
			0x21, 0x00, 0x00, // receive maximum 0: a Protocol Error (§3.1.2.11.3)
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errBadValue,
	},
	{
		name: "v5 maximum packet size 0",
		raw: []byte{
			0x10, 19, // fixed header: CONNECT, remaining length 19
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			5,                            // property length 5
			0x27, 0x00, 0x00, 0x00, 0x00, // maximum packet size 0: a Protocol Error (§3.1.2.11.4)
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errBadValue,
	},
	{
		name: "v5 request problem information 2",
		raw: []byte{
			0x10, 16, // fixed header: CONNECT, remaining length 16
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			2,          // property length 2
			0x17, 0x02, // request problem information 2: 0 or 1 only (§3.1.2.11.7)
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errBadValue,
	},
	{
		name: "v5 request response information 2",
		raw: []byte{
			0x10, 16, // fixed header: CONNECT, remaining length 16
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			2,          // property length 2
			0x19, 0x02, // request response information 2: 0 or 1 only (§3.1.2.11.6)
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errBadValue,
	},
	{
		name: "v5 authentication data without method",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			4,                      // property length 4
			0x16, 0x00, 0x01, 0xaa, // authentication data, no method (§3.1.2.11.10)
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errAuthNoMethod,
	},
	{
		name: "v5 property length past the end",
		raw: []byte{
			0x10, 14, // fixed header: CONNECT, remaining length 14
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			0x20,            // property length 32: only 3 bytes are left
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errPastEnd,
	},
	{
		name: "v5 property value crossing the property length",
		raw: []byte{
			0x10, 19, // fixed header: CONNECT, remaining length 19
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			3,                            // property length 3
			0x11, 0x00, 0x00, 0x00, 0x05, // session expiry: its value ends 2 bytes after the list
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errPastEnd,
	},
	{
		name: "v5 five-byte property length",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			0x80, 0x80, 0x80, 0x80, 0x00, // property length 0 in five bytes (§1.5.5 allows four)
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errTooLong,
	},
	{
		name: "v5 user property value: invalid UTF-8",
		raw: []byte{
			0x10, 21, // fixed header: CONNECT, remaining length 21
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			7,                                       // property length 7
			0x26, 0x00, 0x01, 'k', 0x00, 0x01, 0xff, // user property k=0xff [MQTT-1.5.7-1]
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errBadUTF8,
	},
	{
		name: "v5 user property without value",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x02,       // connect flags: clean start
			0x00, 0x3c, // keep alive 60 s
			4,                     // property length 4
			0x26, 0x00, 0x01, 'k', // user property: a key, then the list ends
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errPastEnd,
	},
	{
		name: "v5 duplicate will delay interval",
		raw: []byte{
			0x10, 31, // fixed header: CONNECT, remaining length 31
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x06,       // connect flags: will, clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,            // property length 0
			0x00, 0x01, 'c', // client identifier "c"
			10,                           // will property length 10
			0x18, 0x00, 0x00, 0x00, 0x01, // will delay interval 1 s
			0x18, 0x00, 0x00, 0x00, 0x02, // will delay interval again (§3.1.3.2.2)
			0x00, 0x01, 't', // will topic "t"
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrMalformed, why: errDuplicate,
	},
	{
		name: "v5 will payload format indicator 2",
		raw: []byte{
			0x10, 23, // fixed header: CONNECT, remaining length 23
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x06,       // connect flags: will, clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,            // property length 0
			0x00, 0x01, 'c', // client identifier "c"
			2,          // will property length 2
			0x01, 0x02, // payload format indicator 2: 0 or 1 only (§3.1.3.2.3)
			0x00, 0x01, 't', // will topic "t"
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrMalformed, why: errBadValue,
	},
	{
		name: "v5 session expiry among will properties",
		raw: []byte{
			0x10, 26, // fixed header: CONNECT, remaining length 26
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x06,       // connect flags: will, clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,            // property length 0
			0x00, 0x01, 'c', // client identifier "c"
			5,                            // will property length 5
			0x11, 0x00, 0x00, 0x00, 0x01, // session expiry: a CONNECT property, not a will one
			0x00, 0x01, 't', // will topic "t"
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrMalformed, why: errUnknownProperty,
	},
	{
		name: "v5 will response topic with wildcard",
		raw: []byte{
			0x10, 27, // fixed header: CONNECT, remaining length 27
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x06,       // connect flags: will, clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,            // property length 0
			0x00, 0x01, 'c', // client identifier "c"
			6,                               // will property length 6
			0x08, 0x00, 0x03, 'a', '/', '#', // response topic with a wildcard [MQTT-3.3.2-14]
			0x00, 0x01, 't', // will topic "t"
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrMalformed, why: errWildcard,
	},
	{
		name: "v5 will response topic empty",
		raw: []byte{
			0x10, 24, // fixed header: CONNECT, remaining length 24
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x06,       // connect flags: will, clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,            // property length 0
			0x00, 0x01, 'c', // client identifier "c"
			3,                // will property length 3
			0x08, 0x00, 0x00, // response topic "": a topic has at least one character [MQTT-4.7.3-1]
			0x00, 0x01, 't', // will topic "t"
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrMalformed, why: errEmptyTopic,
	},
	{
		name: "v5 will property length past the end",
		raw: []byte{
			0x10, 21, // fixed header: CONNECT, remaining length 21
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x05,       // protocol level 5
			0x06,       // connect flags: will, clean start
			0x00, 0x3c, // keep alive 60 s
			0x00,            // property length 0
			0x00, 0x01, 'c', // client identifier "c"
			0x40,            // will property length 64: only 6 bytes are left
			0x00, 0x01, 't', // will topic "t"
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrMalformed, why: errPastEnd,
	},
}
