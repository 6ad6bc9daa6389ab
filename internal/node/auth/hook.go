// Package auth authenticates broker-node clients and enforces topic ACLs as a
// mochi-mqtt hook. Users come from a bcrypt users file (htpasswd -B format),
// anonymous access is a switch, a verified client certificate (see package
// listen) stands in for a password, and ACL rules with %c/%u substitution
// decide publish and subscribe access. Reload swaps users and rules
// atomically for SIGHUP.
package auth

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/node/listen"

	mqtttopic "github.com/mqlb/mqlb/internal/topic"
)

// HookID is the mochi hook id of *Hook.
const HookID = "mqlb-auth"

// Options configures authentication and ACLs.
type Options struct {
	AllowAnonymous bool
	UsersFile      string // lines "username:$2y$...bcrypt..."; '#' comments and blank lines allowed
	ACL            []Rule // evaluated in order; the first rule that applies and matches decides
	ACLDefault     bool   // decision when no rule matches (true = allow)
}

// state is one immutable set of users and rules.
type state struct {
	anonymous  bool
	users      map[string][]byte
	rules      []rule
	aclDefault bool
}

func buildState(o Options) (*state, error) {
	users, err := loadUsers(o.UsersFile)
	if err != nil {
		return nil, err
	}
	rules, err := compileRules(o.ACL)
	if err != nil {
		return nil, err
	}
	return &state{anonymous: o.AllowAnonymous, users: users, rules: rules, aclDefault: o.ACLDefault}, nil
}

// Hook implements mqtt.Hook: OnConnectAuthenticate, OnACLCheck and
// OnPublish (for topic aliases). Add it as the only hook that provides the
// first two: mochi allows a client as soon as any hook says yes. Add it before
// hooks that forward publishes: mochi stops the OnPublish chain at a refusal.
type Hook struct {
	mqtt.HookBase
	state atomic.Pointer[state]
}

var _ mqtt.Hook = (*Hook)(nil)

// New loads the users file and compiles the rules.
func New(opts Options) (*Hook, error) {
	st, err := buildState(opts)
	if err != nil {
		return nil, err
	}
	h := new(Hook)
	h.state.Store(st)
	return h, nil
}

// Reload builds a new set of users and rules and swaps it in atomically;
// if the new options are invalid the old set stays and the error is returned.
// Connected clients are not re-authenticated; their next ACL check uses the
// new rules.
func (h *Hook) Reload(opts Options) error {
	st, err := buildState(opts)
	if err != nil {
		return err
	}
	h.state.Store(st)
	return nil
}

// ID returns the hook id.
func (h *Hook) ID() string { return HookID }

// Provides reports the events the hook handles.
func (h *Hook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublish
}

// OnConnectAuthenticate decides whether the client may connect. It reads the
// username the connection holds (cl.Properties.Username), which the listen
// identity hook may have set from the certificate before this runs. mochi
// answers a refusal with CONNACK 0x86 Bad User Name or Password (v5) or 0x05
// Not authorized (v3.1.1; mochi maps 0x86 to 0x05) [MQTT-3.1.4-2].
func (h *Hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	st := h.state.Load()
	ok, how := st.authenticate(cl, pk)
	log := h.logger().With("remote", cl.Net.Remote, "listener", cl.Net.Listener,
		"client_id", cl.ID, "username", string(cl.Properties.Username))
	if !ok {
		log.Info("connection refused", "reason", how)
		return false
	}
	log.Debug("client authenticated", "method", how)
	st.checkWill(cl, log)
	return true
}

// authenticate returns the decision and a short reason for the log.
func (st *state) authenticate(cl *mqtt.Client, pk packets.Packet) (bool, string) {
	user := string(cl.Properties.Username)
	if user == "" {
		if st.anonymous {
			return true, "anonymous"
		}
		return false, "anonymous not allowed"
	}
	if cn, ok := listen.CertIdentity(cl); ok && cn == user {
		return true, "certificate"
	}
	if !pk.Connect.PasswordFlag {
		return false, "no password"
	}
	hash, known := st.users[user]
	if !known {
		tryCompare(dummyHash(), pk.Connect.Password)
		return false, "unknown user"
	}
	if err := comparePassword(hash, pk.Connect.Password); errors.Is(err, errBusy) {
		return false, "busy"
	} else if err != nil {
		return false, "wrong password"
	}
	return true, "password"
}

// checkWill drops a will message the client could not publish itself: mochi
// publishes wills without an ACL check, which would let a client bypass the
// publish rules by disconnecting.
func (st *state) checkWill(cl *mqtt.Client, log *slog.Logger) {
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 {
		return
	}
	topic := cl.Properties.Will.TopicName
	if st.allowed(cl.ID, string(cl.Properties.Username), topic, true) {
		return
	}
	log.Info("will message dropped: publish to its topic not allowed", "topic", topic)
	cl.Properties.Will = mqtt.Will{}
}

// OnACLCheck decides a publish (write, topic is a topic name) or a subscribe
// (topic is the requested filter; mochi also asks with the topic name before
// each delivery). For subscribe the rule's filter must cover the whole
// requested filter, and a $share/{group}/ prefix is checked by its inner
// filter. A deny rule narrower than an allowed subscription still applies at
// delivery time. mochi answers refusals with SUBACK 0x87 (v5) / 0x80 (v3.1.1),
// PUBACK/PUBREC 0x87 for QoS 1/2 in v5, and disconnects a v3.1.1 client whose
// QoS 1/2 publish is refused; a refused QoS 0 publish is dropped.
func (h *Hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write && topic == "" {
		return true // alias-only publish: OnPublish checks the resolved topic
	}
	user := string(cl.Properties.Username)
	if h.state.Load().allowed(cl.ID, user, topic, write) {
		return true
	}
	h.logger().Debug("acl refused", "client_id", cl.ID, "username", user,
		"topic", topic, "write", write)
	return false
}

// OnPublish checks a publish that used a topic alias once mochi has resolved
// it: mochi runs OnACLCheck before resolving, with an empty topic name for an
// alias-only publish [MQTT-3.3.2-12]. A refused QoS 1 publish from a v5
// client gets PUBACK 0x87; anything else refused is dropped (mochi would
// answer a QoS 2 refusal with a PUBACK, which is not the QoS 2 flow).
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !pk.Properties.TopicAliasFlag && pk.TopicName != "" {
		return pk, nil
	}
	user := string(cl.Properties.Username)
	if h.state.Load().allowed(cl.ID, user, pk.TopicName, true) {
		return pk, nil
	}
	h.logger().Debug("acl refused aliased publish", "client_id", cl.ID, "username", user, "topic", pk.TopicName)
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos == 1 {
		return pk, packets.ErrNotAuthorized
	}
	return pk, packets.ErrRejectPacket
}

func (st *state) allowed(clientID, username, topic string, write bool) bool {
	if !write {
		_, topic, _ = mqtttopic.SplitShared(topic) // mochi passes the whole shared filter [MQTT-4.8.2-1]
	}
	req := strings.Split(topic, "/")
	for i := range st.rules {
		r := &st.rules[i]
		if r.appliesTo(clientID, username, write) && r.matches(req, clientID, username) {
			return r.allow
		}
	}
	return st.aclDefault
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// logger returns the logger mochi set through SetOpts, or a discarding one.
func (h *Hook) logger() *slog.Logger {
	if h.Log == nil {
		return discard
	}
	return h.Log
}
