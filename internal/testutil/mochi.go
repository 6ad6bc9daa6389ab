package testutil

import (
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// Broker is an in-process mochi-mqtt broker listening on a loopback port.
type Broker struct {
	Server *mqtt.Server
	Addr   string // host:port the broker listens on

	mu       sync.Mutex
	connects []ConnectSeen
	count    atomic.Int64
	ln       *netListener
	stop     sync.Once
}

// ConnectSeen is what the broker saw of one accepted CONNECT.
type ConnectSeen struct {
	ClientID string
	Username string
	Remote   string // the remote address as the broker saw it (PROXY-aware when wrapped)
	Listener string
	// ProxyCN is the client certificate CN from a PROXY v2 SSL TLV, when the
	// broker's listener was wrapped with go-proxyproto and the header had one.
	ProxyCN string
	// ProxySSL is true when the PROXY v2 header said the client used TLS.
	ProxySSL bool
	// ProxyCipher is the PROXY v2 SSL TLV's cipher name, when it had one.
	ProxyCipher string
	// At is when the broker accepted its TCP connection (the CONNECT is
	// read a moment later, later still on a loaded machine).
	At time.Time
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
	var logOut io.Writer = io.Discard
	if os.Getenv("MQLB_TEST_BROKER_LOG") != "" { // debugging aid: mochi's log on stderr
		logOut = os.Stderr
	}
	s := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug})),
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
	b.ln = &netListener{id: "t1", ln: l, srv: s}
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
	b.stop.Do(func() {
		b.ln.Close(nil) // clients gone and every establish call returned first
		b.Server.Close()
	})
}

// WithProxyProtocol makes the broker require a PROXY v1/v2 header on every
// connection (as a broker behind mqlb with proxy_protocol on would).
func WithProxyProtocol() BrokerOption {
	return WithListenerWrap(func(ln net.Listener) net.Listener {
		return &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: 5 * time.Second,
			ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
	})
}

// ConnectsOf returns the CONNECTs the broker accepted for a client id.
func (b *Broker) ConnectsOf(clientID string) []ConnectSeen {
	var out []ConnectSeen
	for _, c := range b.Connects() {
		if c.ClientID == clientID {
			out = append(out, c)
		}
	}
	return out
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
	seen := ConnectSeen{
		ClientID: cl.ID,
		Username: string(cl.Properties.Username),
		Remote:   cl.Net.Remote,
		Listener: cl.Net.Listener,
		At:       h.b.ln.acceptedAt(cl.Net.Remote),
	}
	if pc, ok := cl.Net.Conn.(*proxyproto.Conn); ok && pc.ProxyHeader() != nil {
		if tlvs, err := pc.ProxyHeader().TLVs(); err == nil {
			if ssl, ok := tlvparse.FindSSL(tlvs); ok {
				seen.ProxySSL = ssl.ClientSSL()
				seen.ProxyCipher, _ = ssl.SSLCipher()
				if cn, ok := ssl.ClientCN(); ok && ssl.Verified() {
					seen.ProxyCN = cn
				}
			}
		}
	}
	h.b.mu.Lock()
	h.b.connects = append(h.b.connects, seen)
	h.b.mu.Unlock()
	h.b.count.Add(1)
	return nil
}

// netListener adapts any net.Listener to mochi's listeners.Listener.
type netListener struct {
	id   string
	ln   net.Listener
	srv  *mqtt.Server
	once sync.Once

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // accepted, still in mochi's hands
	closed bool
	wg     sync.WaitGroup // establish calls still running

	accepted sync.Map // remote address → time.Time of accept
}

var _ listeners.Listener = (*netListener)(nil)

func (l *netListener) ID() string              { return l.id }
func (l *netListener) Address() string         { return l.ln.Addr().String() }
func (l *netListener) Protocol() string        { return "tcp" }
func (l *netListener) Init(*slog.Logger) error { return nil }

// Close disconnects the listener's clients itself: mochi v2.7.9's CloseFn
// can deadlock against a client disconnecting at the same moment (see
// listen.ClientCloser, which this package cannot import).
// It then closes connections still in their CONNECT and waits for every
// establish call to return, so that mochi's Close (which writes what
// EstablishConnection reads) never runs beside one.
func (l *netListener) Close(listeners.CloseFn) {
	l.once.Do(func() {
		l.ln.Close()
		for _, cl := range l.srv.Clients.GetAll() {
			if cl.Net.Listener == l.id && !cl.Closed() {
				_ = l.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
		l.mu.Lock()
		l.closed = true
		for c := range l.conns {
			c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
}

// acceptedAt returns when the connection from remote was accepted (now if
// unknown).
func (l *netListener) acceptedAt(remote string) time.Time {
	if v, ok := l.accepted.LoadAndDelete(remote); ok {
		return v.(time.Time)
	}
	return time.Now()
}

func (l *netListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok { // a PROXY-wrapped conn would read its header here
			l.accepted.Store(tc.RemoteAddr().String(), time.Now())
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			conn.Close()
			return
		}
		if l.conns == nil {
			l.conns = map[net.Conn]struct{}{}
		}
		l.conns[conn] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			_ = establish(l.id, conn) // mochi logs and closes
			l.mu.Lock()
			delete(l.conns, conn)
			l.mu.Unlock()
		}()
	}
}

// SlowConnack is an authentication hook for StartMochi (WithAuthHook) that
// allows everyone and takes D before answering the CONNECT of a client id
// starting with "slow-" (others, such as health checks, at once): a broker
// slow to send its CONNACK.
type SlowConnack struct {
	auth.AllowHook
	D time.Duration
}

func (h *SlowConnack) ID() string { return "slow-connack" }

func (h *SlowConnack) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *SlowConnack) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	if strings.HasPrefix(cl.ID, "slow-") {
		time.Sleep(h.D)
	}
	return true
}
