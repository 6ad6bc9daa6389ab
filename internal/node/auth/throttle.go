package auth

import (
	"errors"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

// Failed-authentication throttling: each client address and each username
// has a budget of FailureBurst failed authentications that refills by one
// every FailureEvery. While either budget has an attempt left, a CONNECT is
// checked; a failure takes one from both, running into debt (down to
// -maxDebt) once they are spent, so that a burst of guesses sent in
// parallel, all checked before the first failure counted, is paid back by
// as many FailureEvery of refusals. With a budget spent, a CONNECT is
// refused at once with CONNACK 0x9F connection rate exceeded (v5) or 0x03
// server unavailable (3.1.1, which has no better code), before any
// credential is checked.
//
// Successful authentications, and those still in progress, cost nothing:
// clients sharing one address (behind a load balancer that does not send
// the PROXY protocol, or a carrier's NAT) all get through when they
// reconnect at once. An attempt in progress used to take from the budget
// until it succeeded: of 100 valid clients connecting at once from one
// address, with bcrypt at its default cost, 90 got 0x9F.
const (
	FailureBurst = 10
	FailureEvery = time.Second
	// maxDebt bounds how far failures run a budget below zero: a burst of
	// parallel guesses is paid back, but a username guessed by others is
	// not locked out for longer than about a minute after they stop.
	maxDebt = 60
	// maxTracked bounds each table; beyond it entries whose budget is whole
	// again are dropped, and if none is, the table starts over.
	maxTracked = 1 << 16
)

// Throttle wraps the authenticating hook (whatever backends it asks) with
// failed-authentication throttling per client address and per username.
// Add it in place of the hook it wraps. The address is the one mochi holds:
// the client's own behind a load balancer that sends the PROXY protocol, the
// load balancer's otherwise (then every client behind it shares one budget).
type Throttle struct {
	mqtt.Hook
	addrs, users budgets
}

var _ mqtt.Hook = (*Throttle)(nil)

// NewThrottle wraps h.
func NewThrottle(h mqtt.Hook) *Throttle {
	return &Throttle{Hook: h, addrs: newBudgets(), users: newBudgets()}
}

// Provides adds OnConnect, where an attempt takes from the budgets, to what
// the wrapped hook provides.
func (t *Throttle) Provides(b byte) bool { return b == mqtt.OnConnect || t.Hook.Provides(b) }

// OnConnect refuses the client when its address's or its username's budget
// is spent, answering the CONNACK itself (mochi closes without one when
// OnConnect fails) [MQTT-3.2.2-6].
func (t *Throttle) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if t.Hook.Provides(mqtt.OnConnect) {
		if err := t.Hook.OnConnect(cl, pk); err != nil {
			return err
		}
	}
	now := time.Now()
	addr, user := host(cl.Net.Remote), string(cl.Properties.Username)
	if t.addrs.allows(addr, now) && t.users.allows(user, now) {
		return nil
	}
	code := packets.ErrConnectionRateExceeded // v5 0x9F
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.Err3ServerUnavailable // 3.1.1 0x03
	}
	t.logger().Debug("connection refused: too many failed authentications", "remote", cl.Net.Remote,
		"username", user, "client_id", cl.ID)
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code.Code})
	return packets.ErrConnectionRateExceeded
}

// OnConnectAuthenticate asks the wrapped hook; a failure takes one attempt
// from both budgets, and is logged when it spends one. A client refused
// because its credentials could not be checked (a store down, every bcrypt
// slot busy) costs nothing: during a reconnect storm or a store outage,
// clients sharing an address would otherwise spend its budget for all.
func (t *Throttle) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if t.Hook.OnConnectAuthenticate(cl, pk) {
		return true
	}
	if refusedUnavailable(cl) {
		return false
	}
	now := time.Now()
	addr, user := host(cl.Net.Remote), string(cl.Properties.Username)
	t.addrs.charge(addr, now)
	t.users.charge(user, now)
	switch {
	case t.addrs.spent(addr, now):
		t.logger().Warn("authentication failures throttled for a client address", "remote", addr,
			"burst", FailureBurst, "every", FailureEvery)
	case t.users.spent(user, now):
		t.logger().Warn("authentication failures throttled for a username", "username", user,
			"burst", FailureBurst, "every", FailureEvery)
	}
	return false
}

func (t *Throttle) logger() *slog.Logger {
	if h, ok := t.Hook.(*Hook); ok {
		return h.logger()
	}
	return discard
}

// host returns the address part of a remote "host:port".
func host(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// budgets holds a token bucket of attempts per key.
type budgets struct {
	mu sync.Mutex
	m  map[string]*budget
}

type budget struct {
	tokens float64
	at     time.Time
	warned bool // spent was reported since the budget was last whole
}

func newBudgets() budgets { return budgets{m: map[string]*budget{}} }

// get returns key's budget refilled up to now, creating a whole one.
func (b *budgets) get(key string, now time.Time) *budget {
	e := b.m[key]
	if e == nil {
		if len(b.m) >= maxTracked {
			b.prune(now)
		}
		e = &budget{tokens: FailureBurst, at: now}
		b.m[key] = e
	}
	if d := now.Sub(e.at); d > 0 {
		e.tokens = min(FailureBurst, e.tokens+float64(d)/float64(FailureEvery))
		e.at = now
		if e.tokens >= FailureBurst {
			e.warned = false // the episode is over
		}
	}
	return e
}

// allows reports whether key's budget has an attempt left.
func (b *budgets) allows(key string, now time.Time) bool {
	if key == "" {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.get(key, now).tokens >= 1
}

// charge takes a failed attempt from key's budget, into debt down to
// -maxDebt.
func (b *budgets) charge(key string, now time.Time) {
	if key == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.get(key, now)
	e.tokens = max(-maxDebt, e.tokens-1)
}

// spent reports that key's budget is used up, once until it is whole again
// (one warning per guessing episode).
func (b *budgets) spent(key string, now time.Time) bool {
	if key == "" {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.get(key, now)
	if e.tokens >= 1 || e.warned {
		return false
	}
	e.warned = true
	return true
}

// prune drops keys whose budget is whole, or everything if none is.
func (b *budgets) prune(now time.Time) {
	for k, e := range b.m {
		if e.tokens+float64(now.Sub(e.at))/float64(FailureEvery) >= FailureBurst {
			delete(b.m, k)
		}
	}
	if len(b.m) >= maxTracked {
		clear(b.m)
	}
}

// bcryptSlots caps concurrent bcrypt comparisons at half the CPUs (at least
// one): password guessing cannot take the whole machine, and a legitimate
// client waits for a slot instead of sharing the CPU with every guess.
var bcryptSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))

// bcryptWait is how long a comparison waits for a slot before the
// authentication fails as busy (a variable for tests).
var bcryptWait = 5 * time.Second

var errBusy = errors.New("auth: too many password checks at once")

// tryCompare is comparePassword for an unknown user, compared against a
// dummy hash only so that a refusal takes as long as for a known one: it
// runs only if a slot is free at once. Under load (guessing with random
// usernames) it is skipped, which only shows that the machine is busy.
func tryCompare(hash, password []byte) {
	select {
	case bcryptSlots <- struct{}{}:
		_ = bcrypt.CompareHashAndPassword(hash, password)
		<-bcryptSlots
	default:
	}
}

// comparePassword is bcrypt.CompareHashAndPassword within bcryptSlots.
func comparePassword(hash, password []byte) error {
	t := time.NewTimer(bcryptWait)
	defer t.Stop()
	select {
	case bcryptSlots <- struct{}{}:
	case <-t.C:
		return errBusy
	}
	defer func() { <-bcryptSlots }()
	return bcrypt.CompareHashAndPassword(hash, password)
}
