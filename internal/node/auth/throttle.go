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
	"golang.org/x/time/rate"
)

// Failed-authentication throttling: each client address and each username
// may fail FailureBurst times, then once per FailureEvery; beyond that a
// CONNECT from that address or for that username is refused before any
// credential is checked, with CONNACK 0x9F connection rate exceeded (v5) or
// 0x03 server unavailable (3.1.1, which has no better code).
const (
	FailureBurst = 10
	FailureEvery = time.Second
	// maxTracked bounds each table; beyond it entries that have recovered
	// are dropped, and if none has, the table starts over.
	maxTracked = 1 << 16
)

// Throttle wraps the authenticating hook (whatever backends it asks) with
// failed-authentication throttling per client address and per username.
// Add it in place of the hook it wraps. The address is the one mochi holds:
// the client's own behind a load balancer that sends the PROXY protocol, the
// load balancer's otherwise (then every client behind it shares one budget).
type Throttle struct {
	mqtt.Hook
	addrs, users failures
}

var _ mqtt.Hook = (*Throttle)(nil)

// NewThrottle wraps h.
func NewThrottle(h mqtt.Hook) *Throttle {
	return &Throttle{Hook: h, addrs: newFailures(), users: newFailures()}
}

// Provides adds OnConnect, where a throttled client is refused, to what the
// wrapped hook provides.
func (t *Throttle) Provides(b byte) bool { return b == mqtt.OnConnect || t.Hook.Provides(b) }

// OnConnect refuses a client whose address or username failed too often,
// answering the CONNACK itself (mochi closes without one when OnConnect
// fails) [MQTT-3.2.2-6].
func (t *Throttle) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if t.Hook.Provides(mqtt.OnConnect) {
		if err := t.Hook.OnConnect(cl, pk); err != nil {
			return err
		}
	}
	now := time.Now()
	addr, user := host(cl.Net.Remote), string(cl.Properties.Username)
	if !t.addrs.blocked(addr, now) && !t.users.blocked(user, now) {
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

// OnConnectAuthenticate asks the wrapped hook and counts a refusal against
// the client's address and username.
func (t *Throttle) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if t.Hook.OnConnectAuthenticate(cl, pk) {
		return true
	}
	now := time.Now()
	addr, user := host(cl.Net.Remote), string(cl.Properties.Username)
	if t.addrs.fail(addr, now) {
		t.logger().Warn("authentication failures throttled for a client address", "remote", addr,
			"burst", FailureBurst, "every", FailureEvery)
	}
	if t.users.fail(user, now) {
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

// failures is a token bucket of allowed failures per key.
type failures struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newFailures() failures { return failures{m: map[string]*rate.Limiter{}} }

// blocked reports whether key has no failure left.
func (f *failures) blocked(key string, now time.Time) bool {
	if key == "" {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.m[key]
	return l != nil && l.TokensAt(now) < 1
}

// fail takes one failure from key's budget and reports whether that used
// up the budget.
func (f *failures) fail(key string, now time.Time) bool {
	if key == "" {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.m[key]
	if l == nil {
		if len(f.m) >= maxTracked {
			f.prune(now)
		}
		l = rate.NewLimiter(rate.Every(FailureEvery), FailureBurst)
		f.m[key] = l
	}
	return l.AllowN(now, 1) && l.TokensAt(now) < 1
}

// prune drops keys whose budget is whole again, or everything if none is.
func (f *failures) prune(now time.Time) {
	for k, l := range f.m {
		if l.TokensAt(now) >= FailureBurst {
			delete(f.m, k)
		}
	}
	if len(f.m) >= maxTracked {
		clear(f.m)
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
