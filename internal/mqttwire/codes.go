package mqttwire

// CONNACK return codes of MQTT 3.1 and 3.1.1 (v3.1.1 §3.2.2.3).
const (
	Code3Accepted              byte = 0x00
	Code3UnacceptableVersion   byte = 0x01
	Code3IdentifierRejected    byte = 0x02
	Code3ServerUnavailable     byte = 0x03
	Code3BadUsernameOrPassword byte = 0x04
	Code3NotAuthorized         byte = 0x05
)

// Reason codes of MQTT 5.0 (v5 §2.4) used in CONNACK and DISCONNECT.
const (
	Code5Success                     byte = 0x00
	Code5NormalDisconnection         byte = 0x00
	Code5DisconnectWithWill          byte = 0x04
	Code5UnspecifiedError            byte = 0x80
	Code5MalformedPacket             byte = 0x81
	Code5ProtocolError               byte = 0x82
	Code5ImplementationSpecificError byte = 0x83
	Code5UnsupportedProtocolVersion  byte = 0x84
	Code5ClientIdentifierNotValid    byte = 0x85
	Code5BadUsernameOrPassword       byte = 0x86
	Code5NotAuthorized               byte = 0x87
	Code5ServerUnavailable           byte = 0x88
	Code5ServerBusy                  byte = 0x89
	Code5Banned                      byte = 0x8a
	Code5ServerShuttingDown          byte = 0x8b
	Code5BadAuthenticationMethod     byte = 0x8c
	Code5KeepAliveTimeout            byte = 0x8d
	Code5SessionTakenOver            byte = 0x8e
	Code5TopicNameInvalid            byte = 0x90
	Code5PacketTooLarge              byte = 0x95
	Code5QuotaExceeded               byte = 0x97
	Code5AdministrativeAction        byte = 0x98
	Code5UseAnotherServer            byte = 0x9c
	Code5ServerMoved                 byte = 0x9d
	Code5ConnectionRateExceeded      byte = 0x9f
	Code5MaximumConnectTime          byte = 0xa0
)

// Refusal is why the load balancer turns a client away after reading its
// CONNECT; RefusalCode maps it to the client's protocol version.
type Refusal int

// The refusals the load balancer makes.
const (
	RefuseUnavailable   Refusal = iota // no server can take the connection
	RefuseBusy                         // connection limit reached
	RefuseRateLimited                  // per-IP connect rate exceeded
	RefuseTooLarge                     // CONNECT larger than the limit
	RefuseNotAuthorized                // admission denied
	RefuseBadVersion                   // protocol level not supported
	RefuseIdentifier                   // client identifier not acceptable
	RefuseUsername                     // user name not acceptable
	RefuseWillTopic                    // will topic not acceptable
	RefuseMalformed                    // a string property the brokers would close on (v5 only)
)

var refusalNames = [...]string{
	RefuseUnavailable:   "unavailable",
	RefuseBusy:          "busy",
	RefuseRateLimited:   "rate limited",
	RefuseTooLarge:      "too large",
	RefuseNotAuthorized: "not authorized",
	RefuseBadVersion:    "bad version",
	RefuseIdentifier:    "identifier rejected",
	RefuseUsername:      "bad user name",
	RefuseWillTopic:     "will topic invalid",
	RefuseMalformed:     "malformed",
}

func (r Refusal) String() string {
	if r < 0 || int(r) >= len(refusalNames) {
		return "unknown refusal"
	}
	return refusalNames[r]
}

// refusalCodes holds the v3.x and v5 code of each refusal; v3.x has no code
// for a packet too large, a will topic or a malformed packet, so the client
// is closed without an answer.
var refusalCodes = [...]struct {
	v3   byte
	v3ok bool
	v5   byte
}{
	RefuseUnavailable:   {Code3ServerUnavailable, true, Code5ServerUnavailable},
	RefuseBusy:          {Code3ServerUnavailable, true, Code5ServerBusy},
	RefuseRateLimited:   {Code3ServerUnavailable, true, Code5ConnectionRateExceeded},
	RefuseTooLarge:      {0, false, Code5PacketTooLarge},
	RefuseNotAuthorized: {Code3NotAuthorized, true, Code5NotAuthorized},
	RefuseBadVersion:    {Code3UnacceptableVersion, true, Code5UnsupportedProtocolVersion},
	RefuseIdentifier:    {Code3IdentifierRejected, true, Code5ClientIdentifierNotValid},
	RefuseUsername:      {Code3BadUsernameOrPassword, true, Code5BadUsernameOrPassword},
	RefuseWillTopic:     {0, false, Code5TopicNameInvalid},
	RefuseMalformed:     {0, false, Code5MalformedPacket},
}

// RefusalCode returns the CONNACK code that tells a client of the given
// protocol version why it is refused; ok is false when that version has none
// (close without a CONNACK). Levels other than V5 get the 3.1.1 codes, which
// is also what a client with an unsupported level is answered in
// [MQTT-3.1.2-2] (v3.1.1).
func RefusalCode(version byte, r Refusal) (code byte, ok bool) {
	if r < 0 || int(r) >= len(refusalCodes) {
		return 0, false
	}
	rc := refusalCodes[r]
	if version == V5 {
		return rc.v5, true
	}
	return rc.v3, rc.v3ok
}
