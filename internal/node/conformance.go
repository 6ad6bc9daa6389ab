package node

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/topic"
)

// Fixes of what mochi v2.7.9 writes, made by hooks.

// OnPacketEncode corrects acknowledgements mochi builds: a PUBACK carries
// 0x00 success, not 0x01 (mochi puts the granted-QoS code there, which is
// no PUBACK reason code [MQTT-3.4.2-1] and makes clients such as paho-mqtt
// for Python drop the connection). The broker runs with
// NoInheritedPropertiesOnAck, so acks no longer echo the PUBLISH's
// properties.
//
// A v5 DISCONNECT gets a reason code valid for DISCONNECT (see
// disconnectCode). A client resuming a replicated session that could not be
// looked up is refused at its CONNACK (session.Durable.Refused).
//
// It puts a client's packet id back into a SUBACK/UNSUBACK (see pidSwap)
// and counts the QoS 1/2 PUBLISHes in flight to a client held to its
// Receive Maximum (see flow). Nothing is written to a client before its
// CONNACK (see connacks). A QoS 1/2 PUBLISH has DUP set only when it was
// written to the client before (session/sent.go): mochi set it on every
// message it resent on resumption, those queued while the session was
// offline included [MQTT-3.3.1-1].
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	h.n.connacks.wait(cl, pk)
	h.n.flow.sending(cl, pk)
	pk = h.pids.write(cl, pk)
	switch pk.FixedHeader.Type {
	case packets.Publish:
		pk.FixedHeader.Dup = h.n.sessions.Writing(cl, pk)
		// A client asking for no problem information (Request Problem
		// Information 0, what paho.golang sends by default) still gets a
		// PUBLISH's user properties: only packets other than PUBLISH,
		// CONNACK and DISCONNECT lose them [MQTT-3.1.2-29]. mochi dropped
		// them from every packet.
		pk.Mods.DisallowProblemInfo = false
		if pk.Connect.WillProperties.WillDelayInterval > 0 {
			// mochi keeps a delayed will's due time in Expiry, which
			// WritePacket turned into a Message Expiry Interval of 1 s.
			pk.Properties.MessageExpiryInterval = 0
		}
		pk = restoreWillProperties(pk, false) // a will's own properties (willprops.go)
	case packets.Puback:
		if pk.ReasonCode == packets.CodeGrantedQos1.Code {
			pk.ReasonCode = packets.CodeSuccess.Code
		}
	case packets.Disconnect:
		pk.ReasonCode = disconnectCode(pk.ReasonCode)
	case packets.Connack:
		if v := cl.Properties.ProtocolVersion; v != 5 && pk.ReasonCode >= 0x80 {
			pk = v3Refusal(v, pk)
			break
		}
		if pk.ReasonCode == packets.ErrProtocolViolationReservedBit.Code &&
			pk.Properties.ReasonString == packets.ErrProtocolViolationReservedBit.Reason {
			// a reserved flag set makes the CONNECT malformed [MQTT-3.1.2-3]:
			// 0x81, not mochi's 0x82 protocol error
			pk.ReasonCode = packets.ErrMalformedPacket.Code
			pk.Properties.ReasonString = "malformed CONNECT: reserved flag set"
		}
		// mochi then resends a resumed session's messages before the
		// connection is closed (Durable.Start); the client, or the load
		// balancer reading the CONNACK, discards them.
		if pk.ReasonCode != packets.CodeSuccess.Code {
			break
		}
		if cl.Properties.ProtocolVersion == 5 {
			// mochi refuses packets over it but does not say so [MQTT-3.2.2-15]:
			// without the property a client may send up to the protocol's limit.
			pk.Properties.MaximumPacketSize = uint32(h.n.cfg.MQTT.MaxPacketSize)
			// Without it a client may use no alias [MQTT-3.2.2-17], and
			// mochi took any up to 65,535 without saying so.
			pk.Properties.TopicAliasMaximum = uint16(h.n.cfg.MQTT.MaxTopicAlias)
		}
		if why, refused := h.n.durable.Refused(cl); refused {
			pk.SessionPresent = false
			pk.ReasonCode = packets.ErrServerUnavailable.Code // v5 0x88
			pk.Properties.ReasonString = why                  // not sent if the client asked for no problem information
			if cl.Properties.ProtocolVersion < 5 {
				pk.ReasonCode = packets.Err3ServerUnavailable.Code // v3 0x03
			}
		}
	}
	return pk
}

// v3Refusal turns the v5 reason code mochi puts in a refusing CONNACK to
// a client of another protocol level into what 3.1.1 allows (mosquitto
// answers the same): an unknown level gets 0x01 unacceptable protocol
// level [MQTT-3.1.2-2]; an empty client id with clean session 0 (mochi's
// 0x80) 0x02 identifier rejected [MQTT-3.1.3-8]; a malformed CONNECT or a
// protocol violation (a reserved flag set [MQTT-3.1.2-3]) no answer, only
// the close (the packet gets a type nothing encodes, so mochi writes
// nothing); anything else 0x03 server unavailable.
func v3Refusal(version byte, pk packets.Packet) packets.Packet {
	switch {
	case version != 3 && version != 4:
		pk.ReasonCode = packets.Err3UnsupportedProtocolVersion.Code
	case pk.ReasonCode == packets.ErrUnspecifiedError.Code:
		pk.ReasonCode = packets.Err3ClientIdentifierNotValid.Code
	case pk.ReasonCode == packets.ErrMalformedPacket.Code || pk.ReasonCode == packets.ErrProtocolViolation.Code:
		pk.FixedHeader.Type = 0
	default:
		pk.ReasonCode = packets.Err3ServerUnavailable.Code
	}
	pk.Properties = packets.Properties{}
	return pk
}

// OnPacketSent lets go what waits for a client's CONNACK (see connacks),
// once what the connection inherited with its session that it may not read
// is dropped (see dropUnreadable): mochi resends the rest next.
func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Connack {
		if pk.ReasonCode == packets.CodeSuccess.Code {
			h.n.dropUnreadable(cl)
		}
		h.n.connacks.release(cl)
	}
}

// connacks holds what is written to a connecting client until its CONNACK
// is [MQTT-3.2.0-1]. mochi v2.7.9 adds the client to its list
// (server.go:458) before it writes the CONNACK (server.go:460), and a
// message published meanwhile to the client's id (a subscription of the
// session it resumes, or one selected, by id, before its clean start ended
// the previous connection's) is queued for the client's WriteLoop, which
// may write it first; so may another goroutine's DISCONNECT (a takeover).
// The client then reads a PUBLISH where its CONNACK should be (paho.golang
// fails the connect: "received unexpected packet 3"). Each connection is
// held from OnSessionEstablish until its CONNACK is written (OnPacketSent),
// or it ended without one (endedUnseen); nothing written to it meanwhile
// comes from the goroutine that writes the CONNACK.
type connacks struct {
	pending atomic.Int32 // connections held: none, the usual case, takes no lookup
	m       sync.Map     // *mqtt.Client → chan struct{}, closed when let go
}

// hold holds what is written to cl until release.
func (g *connacks) hold(cl *mqtt.Client) {
	if cl.Net.Conn == nil || isMesh(cl) {
		return
	}
	g.pending.Add(1)
	g.m.Store(cl, make(chan struct{}))
}

// release lets go what waits for cl's CONNACK, and what comes after.
func (g *connacks) release(cl *mqtt.Client) {
	if v, ok := g.m.LoadAndDelete(cl); ok {
		close(v.(chan struct{}))
		g.pending.Add(-1)
	}
}

// wait returns once pk may be written to cl.
func (g *connacks) wait(cl *mqtt.Client, pk packets.Packet) {
	if g.pending.Load() == 0 || pk.FixedHeader.Type == packets.Connack {
		return
	}
	if v, ok := g.m.Load(cl); ok {
		<-v.(chan struct{})
	}
}

// disconnectCode returns a reason code a server may send in a DISCONNECT
// (MQTT 5 §3.14.2.1) for code. mochi writes whatever error ended a
// connection, and some are codes of other packets: 0x88 server unavailable
// (CONNACK only; paho-mqtt for Python 1.6 dies on it in a DISCONNECT), 0x91
// packet identifier in use, 0x86 bad credentials.
func disconnectCode(code byte) byte {
	switch code {
	case 0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90,
		0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2:
		return code
	case packets.ErrServerUnavailable.Code:
		return packets.ErrServerBusy.Code // come back later
	case packets.ErrPacketIdentifierInUse.Code, packets.ErrPacketIdentifierNotFound.Code:
		return packets.ErrProtocolViolation.Code
	}
	return packets.ErrUnspecifiedError.Code
}

// emptyWill stands in for a zero-length will payload from OnPacketRead to
// OnConnect (connectAsSent, restoreWill); it is recognised by its address.
var emptyWill = []byte{0}

// connectAsSent lets through two CONNECTs that mochi v2.7.9 refuses as
// protocol violations, with CONNACK 0x82 (no 3.1.x code at all), although
// both versions allow them: a zero-length password and a zero-length will
// payload (each "0 to 65,535 bytes", §3.1.3.5 and §3.1.3.3 of 3.1.1). An
// empty password is taken as none: it matches no user either way. An
// empty will payload passes mochi's check as one byte, and OnConnect puts
// it back (restoreWill), so the will is published empty, as sent.
func connectAsSent(pk packets.Packet) packets.Packet {
	if pk.Connect.PasswordFlag && len(pk.Connect.Password) == 0 {
		pk.Connect.PasswordFlag = false
	}
	if pk.Connect.WillFlag && len(pk.Connect.WillPayload) == 0 {
		pk.Connect.WillPayload = emptyWill
	}
	return pk
}

// checkConnect's refusals; they wrap packets.ErrRejectPacket, the one
// error of an OnPacketRead hook that mochi does not ignore.
var (
	errUsername       = fmt.Errorf("%w: malformed CONNECT: user name not valid UTF-8 or holds U+0000", packets.ErrRejectPacket)
	errPasswordNoUser = fmt.Errorf("%w: 3.x CONNECT with a password and no user name", packets.ErrRejectPacket)
)

// checkConnect refuses a CONNECT that is malformed in a way mochi v2.7.9
// does not check: a user name that is not a valid UTF-8 string (ill-formed
// UTF-8, a surrogate, U+0000) [MQTT-1.5.3-1] [MQTT-1.5.3-2]
// [MQTT-1.5.4-1] [MQTT-1.5.4-2]. mochi decodes the user name as binary
// data, and asked the credential stores with it (PostgreSQL fails on it:
// the client got server unavailable and the node logged a warning each
// time). mochi closes the connection without a CONNACK when OnPacketRead
// refuses the CONNECT, as it does for a client identifier or a will topic
// that is not a valid string, in both protocol versions; so do mosquitto
// and the load balancer. The password is binary data: not checked.
//
// It also refuses a 3.1 or 3.1.1 CONNECT with the password flag set and the
// user name flag clear, a protocol violation [MQTT-3.1.2-22] that mochi took
// (the stores were asked with user name "", or the client let in as
// anonymous): closed without a CONNACK, which 3.x has no code for, as
// mosquitto and the load balancer do. MQTT 5 allows a password without a
// user name (§3.1.2.9).
func checkConnect(pk packets.Packet) error {
	if pk.Connect.UsernameFlag && !mqttwire.ValidString(string(pk.Connect.Username)) {
		return errUsername
	}
	if pk.ProtocolVersion < 5 && pk.Connect.PasswordFlag && !pk.Connect.UsernameFlag {
		return errPasswordNoUser
	}
	return nil
}

// restoreWill undoes connectAsSent's stand-in for an empty will payload.
func restoreWill(cl *mqtt.Client) {
	if p := cl.Properties.Will.Payload; len(p) == 1 && &p[0] == &emptyWill[0] {
		cl.Properties.Will.Payload = []byte{}
	}
}

// OnPacketRead answers a QoS 1/2 PUBLISH to a $SYS topic, which mochi drops
// without an acknowledgement (the client waits for ever): v5 gets PUBACK or
// PUBREC 0x87 not authorized, as from mosquitto; 3.1.1, which has no
// negative acknowledgement, gets it acknowledged and dropped. mochi then
// sees it as QoS 0 and drops it.
//
// Acknowledgements from the client free room in its send window (see flow),
// and QoS 2 steps of durable sessions are recorded (see session/qos2.go).
// A CONNECT is checked (checkConnect) and taken as sent (connectAsSent); a
// PUBLISH's topic alias is set before mochi's ACL check (setInboundAlias).
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Connect {
		if err := checkConnect(pk); err != nil {
			return pk, err
		}
		return connectAsSent(pk), nil
	}
	if pk.FixedHeader.Type == packets.Publish {
		h.setInboundAlias(cl, pk)
	}
	h.n.flow.read(cl, pk)
	if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0 && cl.Properties.ProtocolVersion < 5 {
		// Half the receive quota: a 3.1.1 client is never disconnected for
		// pipelining QoS 1, it is read more slowly (Durable.WaitBacklog). A
		// QoS 2 one waits on what is stored only: its PUBRELs, which free
		// the rest, come after it on the same connection.
		h.n.durable.WaitBacklog(cl, max(1, h.n.cfg.MQTT.ReceiveMaximum/2))
	}
	clientPID := pk.PacketID
	pk = h.pids.read(cl, pk)
	switch pk.FixedHeader.Type {
	case packets.Pubrec:
		return h.n.durable.Pubrec(cl, pk), nil
	case packets.Pubrel:
		h.n.durable.Pubrel(cl, pk, clientPID)
		return pk, nil
	}
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || cl.Net.Inline ||
		len(pk.TopicName) < len(mqtt.SysPrefix) || !strings.EqualFold(pk.TopicName[:len(mqtt.SysPrefix)], mqtt.SysPrefix) {
		return pk, nil
	}
	if err := refusePublish(cl, pk, packets.ErrNotAuthorized, ""); err != nil {
		return pk, err
	}
	pk.FixedHeader.Qos, pk.PacketID = 0, 0 // a QoS 0 PUBLISH has no packet id [MQTT-2.2.1-2]
	return pk, nil
}

// setInboundAlias sets the topic alias a client's PUBLISH sets, before
// mochi processes the PUBLISH. mochi v2.7.9 checks the ACL first and sets
// the alias only for a PUBLISH the ACL allows, so a refused one left its
// alias unset, and the client's next PUBLISH using the alias ended the
// connection with DISCONNECT 0x82 protocol error (the auth hook's
// OnPublish: an alias never set), although the client did nothing wrong.
// The alias is the connection's protocol state, not the message's
// (MQTT 5 §3.3.2.3.4): as mosquitto does, it is set whatever the ACL
// decides, and each use is checked as a publish to its topic (the auth
// hook's OnPublish). Only what mochi itself would set is: an alias within
// the maximum with a topic name mochi takes (not empty, no wildcard, not
// $SYS); mochi sets the same again when the PUBLISH is allowed.
func (h *hook) setInboundAlias(cl *mqtt.Client, pk packets.Packet) {
	a := pk.Properties.TopicAlias
	if !pk.Properties.TopicAliasFlag || a == 0 || int(a) > h.n.cfg.MQTT.MaxTopicAlias || pk.TopicName == "" ||
		cl.Net.Inline || !mqtt.IsValidFilter(pk.TopicName, true) {
		return
	}
	cl.State.TopicAliases.Inbound.Set(a, pk.TopicName)
}

// refuseShareName answers a client's PUBLISH to a topic whose first level
// is $share (OnPublish, after mochi resolved a topic alias), which mochi
// v2.7.9 took as any other topic: retained, and delivered to the
// subscriptions it matched ("$share/x/$share/g/t", a shared one). "$share/"
// is the syntax of shared subscription filters [MQTT-4.8.2-1], and a server
// should keep clients from exchanging messages on topics beginning with $
// (§4.7.2). mosquitto 2.0 refuses such a publish as not authorized (its
// acl__check_dollar); EMQX 5 takes it, and refuses every filter that could
// match it. Nothing is delivered or retained: a v5 QoS 1/2 one gets
// PUBACK/PUBREC 0x90 topic name invalid ("not accepted by this Server",
// v5 §3.4.2.1); a 3.1.1 one, which has no negative acknowledgement, is
// acknowledged and dropped, and a QoS 0 one dropped, as mosquitto does.
func (h *hook) refuseShareName(cl *mqtt.Client, pk packets.Packet) {
	h.n.log.Debug("publish to a $share topic refused", "client_id", cl.ID, "topic", pk.TopicName)
	_ = refusePublish(cl, pk, packets.ErrTopicNameInvalid, "$share/ starts a shared subscription filter, not a topic name")
}

// dropShareWill drops a will whose topic's first level is $share, which
// would be published as one (see refuseShareName); the connection is taken,
// as mosquitto 2.0 takes it and then never publishes the will (its ACL
// check at the will's sending refuses $share topics), and as the auth hook
// drops a will its ACL does not allow. 3.1.1 has no CONNACK code for it
// anyway; v5's 0x90 would refuse the whole connection for it.
func (h *hook) dropShareWill(cl *mqtt.Client) {
	if cl.Properties.Will.Flag == 0 || !topic.ShareName(cl.Properties.Will.TopicName) {
		return
	}
	h.n.noisy.Info(h.n.log, "share-will", "will message dropped: its topic starts with $share/, which only filters may",
		"client_id", cl.ID, "topic", cl.Properties.Will.TopicName)
	cl.Properties.Will = mqtt.Will{}
}

// refusePublish acknowledges a client's QoS 1/2 PUBLISH that is dropped:
// a v5 PUBACK or PUBREC with code (and reason, if not empty); a 3.1.1
// one, which has no negative acknowledgement, as if it were taken (its
// PUBREL is answered: mochi holds no such id). A QoS 0 one gets nothing.
func refusePublish(cl *mqtt.Client, pk packets.Packet, code packets.Code, reason string) error {
	if pk.FixedHeader.Qos == 0 {
		return nil
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	if cl.Properties.ProtocolVersion == 5 {
		ack.ReasonCode, ack.Properties.ReasonString = code.Code, reason
	}
	return cl.WritePacket(ack)
}

// capKeepAlive lowers a v5 client's keep-alive to max (0: no cap), a
// keep-alive of 0 (none) included, and has mochi tell the client in the
// CONNACK's Server Keep Alive [MQTT-3.2.2-21], which the client must then
// use. A 3.1.1 client cannot be told, so keeps its own. Runs in OnConnect:
// mochi sets the connection's deadline from the value right after.
func capKeepAlive(cl *mqtt.Client, max time.Duration) {
	limit := uint16(max / time.Second)
	if limit == 0 || cl.Properties.ProtocolVersion < 5 {
		return
	}
	if ka := cl.State.Keepalive; ka == 0 || ka > limit {
		cl.State.Keepalive, cl.State.ServerKeepalive = limit, true
	}
}
