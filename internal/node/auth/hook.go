// Package auth authenticates broker-node clients and enforces topic ACLs as a
// mochi-mqtt hook. Credentials come from stores tried in order (a bcrypt
// users file in htpasswd -B format, an HTTP service, PostgreSQL, Redis, JWT;
// each may give the client its own ACL rules); a store that fails refuses
// the client with server unavailable. Anonymous access is a switch, a
// verified client certificate stands in for a password on listeners that
// make its CN the username (see package listen, UsernameFromCert), and ACL
// rules with %c/%u substitution decide publish and subscribe access.
// Reload swaps stores and rules atomically for SIGHUP.
package auth

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/node/listen"
	"github.com/mqlb/mqlb/internal/ratelog"

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
	// Backends are the credential stores tried in order (backend*.go);
	// none means the users file alone.
	Backends []config.AuthBackend
	// Wrap, when set, wraps every store with its cache (throttling,
	// concurrency caps): it sees every attempt, cached or not.
	Wrap func(Backend) Backend
}

// state is one immutable set of stores and rules.
type state struct {
	anonymous bool
	// unverified: anonymous clients are allowed and there is no credential
	// store at all, so a username cannot be checked: it is taken as given
	// (mosquitto's allow_anonymous without a password_file, EMQX and
	// VerneMQ without an authenticator).
	unverified bool
	backends   []backendEntry
	rules      []rule
	aclDefault bool
}

func buildState(o Options) (*state, error) {
	rules, err := compileRules(o.ACL)
	if err != nil {
		return nil, err
	}
	cfgs := o.Backends
	if len(cfgs) == 0 {
		cfgs = []config.AuthBackend{{Type: "file", UsersFile: o.UsersFile, Timeout: config.Duration(time.Minute)}}
	}
	backends, err := buildBackends(cfgs, o.UsersFile)
	if err != nil && len(o.Backends) == 0 {
		// the users file alone, not a configured store: name its key
		return nil, fmt.Errorf("auth.users_file: %w", errors.Unwrap(err))
	}
	if err != nil {
		return nil, err
	}
	if o.Wrap != nil {
		for i := range backends {
			backends[i].b = o.Wrap(backends[i].b)
		}
	}
	return &state{anonymous: o.AllowAnonymous, unverified: o.AllowAnonymous && len(o.Backends) == 0 && o.UsersFile == "",
		backends: backends, rules: rules, aclDefault: o.ACLDefault}, nil
}

// Unverified reports whether usernames are taken unchecked: anonymous
// clients are allowed and no credential store is configured.
func (h *Hook) Unverified() bool { return h.state.Load().unverified }

// NamesUsers reports whether an ACL rule applies to named users or
// substitutes %u: with Unverified, any client can claim those rights.
func (h *Hook) NamesUsers() bool {
	for _, r := range h.state.Load().rules {
		if len(r.users) > 0 || r.subst && strings.Contains(strings.Join(r.levels, "/"), "%u") {
			return true
		}
	}
	return false
}

// Hook implements mqtt.Hook: OnConnect (enhanced authentication refused),
// OnConnectAuthenticate, OnACLCheck and OnPublish (for topic aliases). Add it as the only hook that provides the
// first two: mochi allows a client as soon as any hook says yes. Add it before
// hooks that forward publishes: mochi stops the OnPublish chain at a refusal.
type Hook struct {
	mqtt.HookBase
	state    atomic.Pointer[state]
	acls     sync.Map     // *mqtt.Client → ownRules: the rules of the backend that allowed it
	own      *slog.Logger // SetLogger's; set before the hook is added
	refusals *ratelog.Log // "connection refused" lines, by client address and username
}

// RefusalLogEvery is how often one client address and username may write a
// "connection refused" line; the next one says how many were not written.
const RefusalLogEvery = 10 * time.Second

var _ mqtt.Hook = (*Hook)(nil)

// New loads the users file and compiles the rules.
func New(opts Options) (*Hook, error) {
	st, err := buildState(opts)
	if err != nil {
		return nil, err
	}
	h := &Hook{refusals: ratelog.New(RefusalLogEvery)}
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
	old := h.state.Swap(st)
	// Lookups that started on the old stores may still run: close them later.
	time.AfterFunc(time.Minute, func() { closeBackends(old.backends) })
	return nil
}

// Stop closes the credential stores (mochi calls it when the server closes).
func (h *Hook) Stop() error {
	if st := h.state.Load(); st != nil {
		closeBackends(st.backends)
	}
	return nil
}

// ID returns the hook id.
func (h *Hook) ID() string { return HookID }

// Provides reports the events the hook handles.
func (h *Hook) Provides(b byte) bool {
	return b == mqtt.OnConnect || b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublish ||
		b == mqtt.OnDisconnect
}

// OnConnect refuses an MQTT 5 CONNECT with an Authentication Method: the
// node supports no enhanced authentication method, so it answers CONNACK
// 0x8C bad authentication method and closes the connection
// [MQTT-4.12.0-1], as mosquitto 2.0 does, before any credential store is
// asked. mochi ignored the property: a client doing SCRAM for mutual
// authentication got 0x00 without an Authentication Method and took it for
// a success. The CONNACK is written here: mochi closes without one when
// OnConnect fails. (The node's packet guard refuses any AUTH packet.)
func (h *Hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if pk.ProtocolVersion != 5 || pk.Properties.AuthenticationMethod == "" {
		return nil
	}
	h.logger().Debug("connection refused: enhanced authentication not supported", "remote", cl.Net.Remote,
		"listener", cl.Net.Listener, "client_id", cl.ID, "method", pk.Properties.AuthenticationMethod)
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack},
		ReasonCode: packets.ErrBadAuthenticationMethod.Code}
	ack.Properties.ReasonString = "enhanced authentication not supported"
	_ = cl.WritePacket(ack)
	return packets.ErrBadAuthenticationMethod
}

// OnDisconnect forgets the client's own ACL rules when its session ends
// with the connection. A session that stays keeps them: mochi checks every
// message it queues for the offline client with OnACLCheck, which must
// decide as it did while the client was connected (as mosquitto does). The
// rules of sessions that end later, expire or move go with Forget.
func (h *Hook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire {
		h.acls.Delete(cl)
	}
}

// Held returns how many clients' own ACL rules the hook keeps.
func (h *Hook) Held() (n int) {
	h.acls.Range(func(any, any) bool { n++; return true })
	return n
}

// ownRules are the ACL rules a credential store gave a client, and when.
type ownRules struct {
	rules []rule
	at    time.Time
}

// Forget drops the own ACL rules of every client for which held is false,
// given more than grace ago (a client is held only once its session is
// established, after it authenticated): the node calls it now and then with
// "is cl still the session mochi holds for its id", which covers sessions
// that expired, were taken over or moved to another node.
func (h *Hook) Forget(held func(*mqtt.Client) bool, grace time.Duration) {
	h.acls.Range(func(k, v any) bool {
		if cl := k.(*mqtt.Client); time.Since(v.(ownRules).at) > grace && !held(cl) {
			h.acls.Delete(cl)
		}
		return true
	})
}

// clientRules returns the rules the allowing backend gave cl.
func (h *Hook) clientRules(cl *mqtt.Client) []rule {
	if v, ok := h.acls.Load(cl); ok {
		return v.(ownRules).rules
	}
	return nil
}

// OnConnectAuthenticate decides whether the client may connect. It reads the
// username the connection holds (cl.Properties.Username), which the listen
// identity hook may have set from the certificate before this runs. mochi
// answers a refusal with CONNACK 0x86 Bad User Name or Password (v5) or 0x05
// Not authorized (v3.1.1; mochi maps 0x86 to 0x05) [MQTT-3.1.4-2]. A store
// that fails (down, timeout, bad answer) refuses with server unavailable
// (0x88 / 0x03): fail closed.
func (h *Hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	st := h.state.Load()
	v := st.authenticate(cl, pk)
	log := h.logger().With("remote", cl.Net.Remote, "listener", cl.Net.Listener,
		"client_id", cl.ID, "username", string(cl.Properties.Username))
	if errors.Is(v.err, errBusy) {
		// every client of a reconnect storm may come here: not a warning each
		log.Debug("password checks busy; client refused", "backend", v.how)
		refuseUnavailable(cl, packets.ErrServerBusy, v.err)
		return false
	}
	if v.err != nil {
		log.Warn("credential store failed; client refused", "backend", v.how, "error", v.err)
		refuseUnavailable(cl, packets.ErrServerUnavailable, v.err)
		return false
	}
	if !v.ok {
		// at info, like mosquitto's and EMQX's failed logins; repeated
		// failures write one line per RefusalLogEvery per address and
		// username (and the throttle refuses a guesser before this after
		// FailureBurst failures)
		h.refusals.Info(log, host(cl.Net.Remote)+" "+string(cl.Properties.Username), "connection refused", "reason", v.how)
		return false
	}
	if len(v.acl) > 0 {
		h.acls.Store(cl, ownRules{rules: v.acl, at: time.Now()})
	}
	log.Debug("client authenticated", "method", v.how)
	st.checkWill(cl, v.acl, log)
	return true
}

// verdict is authenticate's answer: ok, the client's own rules, and how it
// was decided (a reason or the backend) for the log.
type verdict struct {
	ok  bool
	acl []rule
	how string
	err error
}

// authenticate asks the stores in order.
func (st *state) authenticate(cl *mqtt.Client, pk packets.Packet) verdict {
	user := string(cl.Properties.Username)
	if user == "" && st.anonymous {
		return verdict{ok: true, how: "anonymous"}
	}
	// The certificate stands in for the password only where the listener
	// made its CN the username (username_from_cert, an explicit opt-in as
	// VerneMQ's use_identity_as_username and EMQX's peer_cert_as_username
	// are). Elsewhere a client whose username happens to be its CN is
	// checked as anyone: a password revoked or a user denied in a store
	// stops it too. The CN still goes to the stores (cert_identity).
	cn, hasCN := listen.CertIdentity(cl)
	if hasCN && cn == user && user != "" && listen.UsernameFromCert(cl) {
		return verdict{ok: true, how: "certificate"}
	}
	if st.unverified {
		return verdict{ok: true, how: "unverified (no credential store)"}
	}
	if user == "" && !pk.Connect.PasswordFlag {
		return verdict{how: "anonymous not allowed"}
	}
	req := Request{ClientID: cl.ID, Username: user, Password: string(pk.Connect.Password), CertIdentity: cn,
		Remote: cl.Net.Remote, ProtocolVersion: cl.Properties.ProtocolVersion}
	d, name, err := chain(st.backends, req)
	switch {
	case errors.Is(err, errNoDecision):
		return verdict{how: "unknown user"}
	case err != nil:
		return verdict{how: name, err: err}
	case d.Result != Allow:
		return verdict{how: "denied by " + name}
	}
	acl, err := compileRules(d.ACL)
	if err != nil {
		return verdict{how: name, err: err}
	}
	return verdict{ok: true, acl: acl, how: name}
}

// refuseUnavailable answers the CONNACK itself — v5 code (0x88 server
// unavailable, 0x89 server busy), 3.1.1 0x03 server unavailable — and
// closes the connection, so that mochi's own refusal (bad credentials)
// cannot be sent after it [MQTT-3.2.2-7]. The client is stopped with an
// unavailableError: it was not refused for its credentials (Throttle).
func refuseUnavailable(cl *mqtt.Client, v5 packets.Code, cause error) {
	code := v5
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.Err3ServerUnavailable // v3 0x03
	}
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code.Code})
	cl.Stop(unavailableError{cause})
}

// unavailableError is the stop cause of a client refused because the
// credentials could not be checked.
type unavailableError struct{ err error }

func (e unavailableError) Error() string { return e.err.Error() }
func (e unavailableError) Unwrap() error { return e.err }

// refusedUnavailable reports whether cl was refused because its
// credentials could not be checked (refuseUnavailable).
func refusedUnavailable(cl *mqtt.Client) bool {
	var u unavailableError
	return errors.As(cl.StopCause(), &u)
}

// checkWill drops a will message the client could not publish itself: mochi
// publishes wills without an ACL check, which would let a client bypass the
// publish rules by disconnecting.
func (st *state) checkWill(cl *mqtt.Client, acl []rule, log *slog.Logger) {
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 {
		return
	}
	topic := cl.Properties.Will.TopicName
	if st.allowed(acl, cl.ID, string(cl.Properties.Username), topic, true) {
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
	if !write && detached(cl) {
		return true // checked against the connection that takes the session (see detached)
	}
	user := string(cl.Properties.Username)
	if h.state.Load().allowed(h.clientRules(cl), cl.ID, user, topic, write) {
		return true
	}
	h.logger().Debug("acl refused", "client_id", cl.ID, "username", user,
		"topic", topic, "write", write)
	return false
}

// detached reports a session the node holds with no connection and no
// credentials (package session, newDetached: adopted from the registry after
// a restart, installed by a handover, or a placeholder keeping a session's
// messages during one). Its user name and own rules are not known, so the
// read ACL cannot be applied to it: with rules naming the user (%u) every
// message for it was refused and lost, even for the session's owner. What
// it keeps is checked against the connection that takes the session over,
// before anything is sent (node: dropUnreadable), or by the durable reader
// for that connection.
func detached(cl *mqtt.Client) bool {
	return !cl.Net.Inline && cl.Net.Conn == nil && cl.Net.Listener == "mesh"
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
	if pk.TopicName == "" {
		// An alias this connection never set: a protocol error (MQTT 5
		// §3.3.2.3.4), DISCONNECT 0x82. mochi resolves it to "" and drops
		// the message silently, leaving a QoS 1/2 packet id unanswered.
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			ReasonCode: packets.ErrProtocolViolation.Code})
		cl.Stop(packets.ErrProtocolViolation)
		return pk, packets.ErrRejectPacket
	}
	user := string(cl.Properties.Username)
	if h.state.Load().allowed(h.clientRules(cl), cl.ID, user, pk.TopicName, true) {
		return pk, nil
	}
	h.logger().Debug("acl refused aliased publish", "client_id", cl.ID, "username", user, "topic", pk.TopicName)
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos == 1 {
		return pk, packets.ErrNotAuthorized
	}
	return pk, packets.ErrRejectPacket
}

// allowed applies the client's own rules (from its credential store), then
// auth.acl, then the default.
func (st *state) allowed(own []rule, clientID, username, topic string, write bool) bool {
	if !write {
		_, topic, _ = mqtttopic.SplitShared(topic) // mochi passes the whole shared filter [MQTT-4.8.2-1]
	}
	req := strings.Split(topic, "/")
	for _, rules := range [][]rule{own, st.rules} {
		for i := range rules {
			r := &rules[i]
			if r.appliesTo(clientID, username, write) && r.matches(req, clientID, username) {
				return r.allow
			}
		}
	}
	return st.aclDefault
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// SetOpts keeps the logger mochi gives the hook, and gives it to go-redis.
func (h *Hook) SetOpts(l *slog.Logger, o *mqtt.HookOptions) {
	h.HookBase.SetOpts(l, o)
	if l != nil {
		redisLog.l.Store(l.With("component", "redis"))
	}
}

// SetLogger gives the hook a logger of its own, used instead of mochi's
// (which the node writes at debug for mochi's info lines): call it before
// adding the hook.
func (h *Hook) SetLogger(l *slog.Logger) { h.own = l }

// logger returns SetLogger's logger, else the one mochi set through
// SetOpts, else a discarding one.
func (h *Hook) logger() *slog.Logger {
	if h.own != nil {
		return h.own
	}
	if h.Log == nil {
		return discard
	}
	return h.Log
}
