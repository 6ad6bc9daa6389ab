package mqttwire

// flagFixtures are rejected on the protocol name and level, the connect
// flags, or the content of a string.
var flagFixtures = []fixture{
	{
		name: "unknown protocol name",
		raw: []byte{
			0x10, 13, // fixed header: CONNECT, remaining length 13
			0x00, 0x04, 'M', 'Q', 'T', 'X', // protocol name "MQTX" [MQTT-3.1.2-1]
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errUnknownProtocol,
	},
	{
		name: "lower-case protocol name",
		raw: []byte{
			0x10, 13, // fixed header: CONNECT, remaining length 13
			0x00, 0x04, 'm', 'q', 't', 't', // protocol name "mqtt": names are case-sensitive
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errUnknownProtocol,
	},
	{
		name: "protocol level 6",
		raw: []byte{
			0x10, 13, // fixed header: CONNECT, remaining length 13
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x06,       // protocol level 6: not supported [MQTT-3.1.2-2]
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
		},
		want: Connect{Version: 6},
		err:  ErrUnsupportedVersion,
	},
	{
		name: "MQTT with level 3",
		raw: []byte{
			0x10, 13, // fixed header: CONNECT, remaining length 13
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x03,       // protocol level 3: 3.1 is "MQIsdp"
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
		},
		want: Connect{Version: 3},
		err:  ErrUnsupportedVersion,
	},
	{
		name: "MQIsdp with level 4",
		raw: []byte{
			0x10, 15, // fixed header: CONNECT, remaining length 15
			0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name "MQIsdp"
			0x04,       // protocol level 4: 3.1.1 is "MQTT"
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
		},
		want: Connect{Version: 4},
		err:  ErrUnsupportedVersion,
	},
	{
		name: "reserved connect flag",
		raw: []byte{
			0x10, 13, // fixed header: CONNECT, remaining length 13
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x03,       // connect flags: clean session and the reserved bit [MQTT-3.1.2-3]
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errReservedFlag,
	},
	{
		name: "will QoS 3",
		raw: []byte{
			0x10, 19, // fixed header: CONNECT, remaining length 19
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x1e,       // connect flags: will QoS 3 [MQTT-3.1.2-14], will, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
			0x00, 0x01, 't', // will topic "t"
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrMalformed, why: errWillQoS,
	},
	{
		name: "will QoS 1 without will flag",
		raw: []byte{
			0x10, 13, // fixed header: CONNECT, remaining length 13
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x0a,       // connect flags: will QoS 1 but no will [MQTT-3.1.2-13], clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errWillFlags,
	},
	{
		name: "will retain without will flag",
		raw: []byte{
			0x10, 13, // fixed header: CONNECT, remaining length 13
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x22,       // connect flags: will retain but no will [MQTT-3.1.2-15], clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
		},
		err: ErrMalformed, why: errWillFlags,
	},
	{
		name: "v3.1.1 password without user name",
		raw: []byte{
			0x10, 16, // fixed header: CONNECT, remaining length 16
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x42,       // connect flags: password without user name [MQTT-3.1.2-22]
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
			0x00, 0x01, 'p', // password "p"
		},
		err: ErrMalformed, why: errPasswordNoUser,
	},
	{
		name: "v3.1 password without user name",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name "MQIsdp"
			0x03,       // protocol level 3
			0x40,       // connect flags: password without user name
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
			0x00, 0x01, 'p', // password "p"
		},
		err: ErrMalformed, why: errPasswordNoUser,
	},
	{
		name: "client identifier: invalid UTF-8",
		raw: []byte{
			0x10, 14, // fixed header: CONNECT, remaining length 14
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x02, 0xc3, 0x28, // client identifier: 0xc3 starts a sequence 0x28 cannot continue [MQTT-1.5.3-1]
		},
		err: ErrMalformed, why: errBadUTF8,
	},
	{
		name: "client identifier: surrogate U+D800",
		raw: []byte{
			0x10, 15, // fixed header: CONNECT, remaining length 15
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x03, 0xed, 0xa0, 0x80, // client identifier: U+D800, not allowed in UTF-8 [MQTT-1.5.3-1]
		},
		err: ErrMalformed, why: errBadUTF8,
	},
	{
		name: "client identifier: overlong encoding",
		raw: []byte{
			0x10, 14, // fixed header: CONNECT, remaining length 14
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x02, 0xc0, 0xaf, // client identifier: '/' in two bytes, ill-formed
		},
		err: ErrMalformed, why: errBadUTF8,
	},
	{
		name: "user name with U+0000",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x82,       // connect flags: user name, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
			0x00, 0x03, 'a', 0x00, 'b', // user name with U+0000 [MQTT-1.5.3-2]
		},
		err: ErrMalformed, why: errBadUTF8,
	},
	{
		name: "will topic with '#'",
		raw: []byte{
			0x10, 21, // fixed header: CONNECT, remaining length 21
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x06,       // connect flags: will, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
			0x00, 0x03, 'a', '/', '#', // will topic: a wildcard [MQTT-3.3.2-2] [MQTT-4.7.1-1]
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrMalformed, why: errWildcard,
	},
	{
		name: "will topic with '+'",
		raw: []byte{
			0x10, 21, // fixed header: CONNECT, remaining length 21
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x06,       // connect flags: will, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
			0x00, 0x03, '+', '/', 'b', // will topic: a wildcard [MQTT-3.3.2-2] [MQTT-4.7.1-1]
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrMalformed, why: errWildcard,
	},
	{
		name: "empty will topic",
		raw: []byte{
			0x10, 18, // fixed header: CONNECT, remaining length 18
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name "MQTT"
			0x04,       // protocol level 4
			0x06,       // connect flags: will, clean session
			0x00, 0x3c, // keep alive 60 s
			0x00, 0x01, 'c', // client identifier "c"
			0x00, 0x00, // will topic "": a topic has at least one character [MQTT-4.7.3-1]
			0x00, 0x01, 'x', // will payload "x"
		},
		err: ErrMalformed, why: errEmptyTopic,
	},
}
