package testutil

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Broker is an in-process mochi-mqtt broker listening on a loopback port.
type Broker struct {
	Server *mqtt.Server
	Addr   string // host:port the broker listens on

	mu       sync.Mutex
	connects []ConnectSeen
	count    atomic.Int64
	ln       *netListener
}

// ConnectSeen is what the broker saw of one accepted CONNECT.
type ConnectSeen struct {
	ClientID string
	Username string
	Remote   string // the remote address as the broker saw it (PROXY-aware when wrapped)
	Listener string
}

// BrokerOption adjusts StartMochi.
type BrokerOption func(*brokerConfig)

type brokerConfig struct {
	wrap func(net.Listener) net.Listener
	addr string
	auth mqtt.Hook
}

// WithListenerWrap wraps the broker's net.Listener, for example with
// go-proxyproto so the broker reads PROXY headers.
func WithListenerWrap(f func(net.Listener) net.Listener) BrokerOption {
	return func(c *brokerConfig) { c.wrap = f }
}

// WithAddr makes the broker listen on addr instead of 127.0.0.1:0 (used to
// restart a broker on the port it had).
func WithAddr(addr string) BrokerOption { return func(c *brokerConfig) { c.addr = addr } }

// WithAuthHook replaces the allow-all hook.
func WithAuthHook(h mqtt.Hook) BrokerOption { return func(c *brokerConfig) { c.auth = h } }

// StartMochi starts a mochi-mqtt broker on a loopback port and stops it when
// the test ends. Every CONNECT it accepts is recorded (see Connects).
func StartMochi(t testing.TB, opts ...BrokerOption) *Broker {
	t.Helper()
	cfg := brokerConfig{addr: "127.0.0.1:0"}
	for _, o := range opts {
		o(&cfg)
	}
	s := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	b := &Broker{Server: s}
	if cfg.auth == nil {
		cfg.auth = new(auth.AllowHook)
	}
	if err := s.AddHook(cfg.auth, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddHook(&recordHook{b: b}, nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		t.Fatalf("mochi listen: %v", err)
	}
	var l net.Listener = ln
	if cfg.wrap != nil {
		l = cfg.wrap(ln)
	}
	b.ln = &netListener{id: "t1", ln: l}
	if err := s.AddListener(b.ln); err != nil {
		t.Fatal(err)
	}
	b.Addr = ln.Addr().String()
	go s.Serve()
	t.Cleanup(func() { b.Stop() })
	return b
}

// Stop closes the broker and all its client connections. It is safe to call twice.
func (b *Broker) Stop() {
	b.Server.Close()
}

// Connects returns the CONNECTs the broker accepted so far.
func (b *Broker) Connects() []ConnectSeen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]ConnectSeen(nil), b.connects...)
}

// ConnectCount returns how many CONNECTs the broker accepted.
func (b *Broker) ConnectCount() int64 { return b.count.Load() }

// HasClient reports whether a client with this id is currently connected.
func (b *Broker) HasClient(id string) bool {
	cl, ok := b.Server.Clients.Get(id)
	return ok && !cl.Closed()
}

type recordHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *recordHook) ID() string { return "testutil-record" }

func (h *recordHook) Provides(b byte) bool { return b == mqtt.OnConnect }

func (h *recordHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if cl.Net.Inline {
		return nil
	}
	h.b.mu.Lock()
	h.b.connects = append(h.b.connects, ConnectSeen{
		ClientID: cl.ID,
		Username: string(cl.Properties.Username),
		Remote:   cl.Net.Remote,
		Listener: cl.Net.Listener,
	})
	h.b.mu.Unlock()
	h.b.count.Add(1)
	return nil
}

// netListener adapts any net.Listener to mochi's listeners.Listener.
type netListener struct {
	id   string
	ln   net.Listener
	once sync.Once
}

var _ listeners.Listener = (*netListener)(nil)

func (l *netListener) ID() string              { return l.id }
func (l *netListener) Address() string         { return l.ln.Addr().String() }
func (l *netListener) Protocol() string        { return "tcp" }
func (l *netListener) Init(*slog.Logger) error { return nil }
func (l *netListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		l.ln.Close()
		closeClients(l.id)
	})
}

func (l *netListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		go establish(l.id, conn) //nolint:errcheck // mochi logs and closes
	}
}
