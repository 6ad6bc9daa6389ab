package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/node/auth"
	"github.com/mqlb/mqlb/internal/node/listen"
)

// newBroker builds the mochi server with the node's limits and hooks: the
// certificate identity hook first (it may set the username), then the auth
// hook (the only one that authenticates and authorizes), then the node's.
func newBroker(n *Node) (*mqtt.Server, error) {
	c := n.cfg
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClients = math.MaxInt64
	if c.MQTT.MaxClients > 0 {
		caps.MaximumClients = c.MQTT.MaxClients
	}
	caps.MaximumPacketSize = uint32(c.MQTT.MaxPacketSize)
	caps.ReceiveMaximum = uint16(c.MQTT.ReceiveMaximum)
	caps.MaximumInflight = uint16(c.MQTT.MaxInflight)
	caps.MaximumQos = byte(c.MQTT.MaxQoS)
	caps.TopicAliasMaximum = uint16(c.MQTT.MaxTopicAlias) // mochi refuses aliases above it (0x94) but does not announce it
	caps.MaximumSessionExpiryInterval = uint32(c.Sessions.MaxExpiry.D() / time.Second)
	// No cap of mochi's own on message lifetimes: retained messages live until
	// cleared, queued ones until their session or their own expiry ends.
	caps.MaximumMessageExpiryInterval = 0
	caps.Compatibilities.NoInheritedPropertiesOnAck = true // acks do not echo the PUBLISH's user properties
	s := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(demote{n.log.With("component", "mochi").Handler(), newPerMessage(10 * time.Second)}),
		SysTopicResendInterval: 10,
	})
	authHook, err := auth.New(authOptions(c.Auth))
	if err != nil {
		return nil, err
	}
	authHook.SetLogger(n.log.With("component", "auth")) // not mochi's: refused logins are info, not debug
	limits := &limitsHook{maxSubs: c.MQTT.MaxSubscriptionsPerClient}
	n.hook = &hook{n: n}
	for _, h := range []mqtt.Hook{listen.NewIdentityHook(), auth.NewThrottle(authHook), limits, n.hook} {
		if err := s.AddHook(h, nil); err != nil {
			return nil, err
		}
	}
	n.auth = authHook
	n.warnUnverified()
	addSentinel(s)
	return s, nil
}

// warnUnverified says, at start and after a reload, that usernames are
// taken unchecked while ACL rules give rights by username: any client can
// claim them.
func (n *Node) warnUnverified() {
	if n.auth.Unverified() && n.auth.NamesUsers() {
		n.log.Warn("auth: no credential store and allow_anonymous is true: usernames are not verified, " +
			"so any client can claim the rights of the ACL rules that name users or use %u; " +
			"configure auth.users_file or auth.backends, or set auth.allow_anonymous: false")
	}
}

// CheckAuth builds the credential stores and ACL rules of a as the node does
// at start — users files and JWT keys read, connection strings parsed, no
// store contacted — and closes them: for mqlb check. Its errors are the
// node's.
func CheckAuth(a config.NodeAuth) error {
	h, err := auth.New(authOptions(a))
	if err != nil {
		return err
	}
	return h.Stop()
}

func authOptions(a config.NodeAuth) auth.Options {
	o := auth.Options{AllowAnonymous: a.AllowsAnonymous(), UsersFile: a.UsersFile, ACLDefault: a.ACLDefault == "allow",
		Backends: a.Backends}
	for _, r := range a.ACL {
		o.ACL = append(o.ACL, auth.Rule{Allow: r.Allow, Access: r.Access, Topic: r.Topic, Users: r.Users, Clients: r.Clients})
	}
	return o
}

// newListener builds one MQTT listener from its config.
func (n *Node) newListener(l config.NodeListener) (listeners.Listener, error) {
	s, log := n.broker, n.log
	o := listen.Options{ID: l.Name, Type: l.Type, Address: l.Address, Path: l.Path, UsernameFromCert: l.UsernameFromCert,
		CloseClients: listen.ClientCloser(s), MaxQueuedBytes: n.cfg.MQTT.MaxQueuedBytes, SlowConsumer: n.slowConsumer(l.Name)}
	if l.TLS != nil {
		tc, err := l.TLS.ServerConfig()
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		o.TLS = tc
	}
	if pp := l.ProxyProtocol; pp != nil && pp.Accept {
		trusted, err := config.ParsePrefixes(pp.Trusted)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		o.ProxyProtocol, o.Trusted, o.ProxyTimeout = true, trusted, pp.Timeout.D()
	}
	return listen.New(o, log)
}

// demote logs mochi's info messages (hooks added, listeners attached, server
// started) at debug: the node logs its own start-up.
type demote struct {
	slog.Handler
	every *perMessage // mochi's warnings per delivery: one line per interval each
}

// perDelivery are mochi warnings written once per dropped message: one
// QoS 1 subscription to 50,000 retained messages wrote 41,808 lines on each
// node. The drops are counted (mqlb_node_dropped_total); the log says so
// once per interval, with how many were not written.
var perDelivery = map[string]bool{"client store quota reached": true, "packet ids exhausted": true}

// perMessage lets one record of each message through per interval.
type perMessage struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
	quiet map[string]int // records not written since
}

func newPerMessage(every time.Duration) *perMessage {
	return &perMessage{every: every, last: map[string]time.Time{}, quiet: map[string]int{}}
}

// allow reports whether a record of msg may be written now, and how many
// were held back before it.
func (p *perMessage) allow(msg string, now time.Time) (bool, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.last[msg]) < p.every {
		p.quiet[msg]++
		return false, 0
	}
	n := p.quiet[msg]
	p.last[msg], p.quiet[msg] = now, 0
	return true, n
}

func (d demote) Enabled(ctx context.Context, l slog.Level) bool {
	if l == slog.LevelInfo {
		l = slog.LevelDebug
	}
	return d.Handler.Enabled(ctx, l)
}

func (d demote) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo {
		r.Level = slog.LevelDebug
	}
	if strings.Contains(r.Message, "keepalive is below minimum") || r.Level == slog.LevelWarn && willDisconnect(r) {
		r.Level = slog.LevelDebug
	}
	if r.Level >= slog.LevelWarn && perDelivery[r.Message] && d.every != nil {
		ok, held := d.every.allow(r.Message, r.Time)
		if !ok {
			r.Level = slog.LevelDebug
		} else if held > 0 {
			r.AddAttrs(slog.Int("not_logged_since", held))
		}
	}
	if !d.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return d.Handler.Handle(ctx, r)
}

// willDisconnect reports whether r is mochi's "error processing packet"
// for a client's DISCONNECT 0x04 (disconnect with will message): a normal
// end the client chose, not an error.
func willDisconnect(r slog.Record) bool {
	if r.Message != "error processing packet" {
		return false
	}
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			err, ok := a.Value.Any().(error)
			found = ok && errors.Is(err, packets.CodeDisconnectWillMessage)
			return false
		}
		return true
	})
	return found
}

func (d demote) WithAttrs(a []slog.Attr) slog.Handler { return demote{d.Handler.WithAttrs(a), d.every} }
func (d demote) WithGroup(g string) slog.Handler      { return demote{d.Handler.WithGroup(g), d.every} }
