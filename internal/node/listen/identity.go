package listen

import (
	"net"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// identity is what the preamble learned about the client's certificate.
type identity struct {
	cn       string // verified certificate CN
	ok       bool   // cn is set and came from a verified certificate
	fromCert bool   // the listener has UsernameFromCert
}

// identified is implemented by every connection this package hands to mochi,
// so the identity can be recovered from mqtt.Client.Net.Conn.
type identified interface {
	identity() identity
}

// conn is a prepared connection: the PROXY-aware, possibly TLS, stream with
// the identity found on the way. RemoteAddr is the header's source address
// when a PROXY header was read.
type conn struct {
	net.Conn
	id     identity
	linger lingering
	cork   corking
	raw    net.Conn      // the accepted TCP connection under TLS or WebSocket; closing it ends any read or write at once
	done   chan struct{} // closed once mochi is done with the connection (see listener.establish)

	deadline time.Time // the deadline SetDeadline last passed on (see deadlineSlack)
}

func (c *conn) identity() identity { return c.id }

// identifiedConn finds this package's connection in c, looking through
// wrappers that expose what they wrap with NetConn (as crypto/tls.Conn and
// the node's inbound packet guard do).
func identifiedConn(c net.Conn) (identified, bool) {
	for range 8 {
		if ic, ok := c.(identified); ok {
			return ic, true
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		c = w.NetConn()
	}
	return nil, false
}

// CertIdentity returns the verified certificate CN this client presented —
// directly over TLS, or forwarded by a trusted load balancer in the PROXY v2
// SSL TLV — and whether there is one. Clients on listeners from other
// packages have none.
func CertIdentity(cl *mqtt.Client) (cn string, ok bool) {
	if cl == nil {
		return "", false
	}
	ic, isOurs := identifiedConn(cl.Net.Conn)
	if !isOurs {
		return "", false
	}
	id := ic.identity()
	return id.cn, id.ok
}

// UsernameFromCert reports whether cl came through a listener with
// UsernameFromCert: there the identity hook made the verified certificate
// CN the client's username, and the certificate stands in for a password.
func UsernameFromCert(cl *mqtt.Client) bool {
	if cl == nil {
		return false
	}
	ic, isOurs := identifiedConn(cl.Net.Conn)
	return isOurs && ic.identity().fromCert
}

// IdentityHookID is the mochi hook id of NewIdentityHook.
const IdentityHookID = "mqlb-cert-identity"

// NewIdentityHook returns an OnConnect hook for listeners with
// UsernameFromCert: it replaces the client's username with the verified
// certificate CN before authentication runs (mochi calls every OnConnect hook
// before OnConnectAuthenticate). Such a listener requires an identity: a
// client without one is refused with CONNACK 0x87 Not authorized (v5) or
// 0x05 (v3.1/3.1.1). Clients on other listeners are left alone.
func NewIdentityHook() mqtt.Hook { return new(identityHook) }

type identityHook struct {
	mqtt.HookBase
}

func (h *identityHook) ID() string { return IdentityHookID }

func (h *identityHook) Provides(b byte) bool { return b == mqtt.OnConnect }

func (h *identityHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	ic, ok := identifiedConn(cl.Net.Conn)
	if !ok {
		return nil
	}
	id := ic.identity()
	if !id.fromCert {
		return nil
	}
	if !id.ok {
		return h.refuse(cl)
	}
	cl.Properties.Username = []byte(id.cn)
	return nil
}

// refuse answers CONNACK "not authorized" itself: mochi closes the connection
// without any CONNACK when an OnConnect hook returns an error.
// [MQTT-3.2.2-5] / [MQTT-3.2.2-7]: the connection is closed after it.
func (h *identityHook) refuse(cl *mqtt.Client) error {
	code := packets.ErrNotAuthorized // v5 0x87
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.Err3NotAuthorized // v3 0x05
	}
	if h.Log != nil {
		h.Log.Info("refused: listener requires a verified client certificate",
			"remote", cl.Net.Remote, "listener", cl.Net.Listener, "client_id", cl.ID)
	}
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connack},
		ReasonCode:  code.Code, // [MQTT-3.2.2-6] session present stays 0
	}
	if err := cl.WritePacket(ack); err != nil {
		return err
	}
	return packets.ErrNotAuthorized
}
