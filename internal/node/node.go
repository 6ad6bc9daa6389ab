package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/node/auth"
	"github.com/mqlb/mqlb/internal/node/session"
	"github.com/mqlb/mqlb/internal/node/store"
	"github.com/mqlb/mqlb/internal/ratelog"
)

// Node is one broker node: a mochi-mqtt server joined to the other nodes of
// its cluster by the mesh.
type Node struct {
	cfg      *config.Node
	log      *slog.Logger
	name     string
	instance string // random per start: tells a restarted node from its earlier run

	ns                *server.Server // embedded NATS; nil with mesh.url
	token             string
	data, queue, ctrl *nats.Conn // publishes+plain subs, shared members, control (JetStream, takeover, sync)

	broker   *mqtt.Server
	auth     *auth.Hook
	hook     *hook
	attached attached              // connections between OnSessionEstablish and OnDisconnect (unseen.go)
	connacks connacks              // connections between OnSessionEstablish and their CONNACK (conformance.go)
	conns    connCount             // connections being served, until their end is handled (guard.go)
	ended    func(net.Conn, error) // called as mochi is done with a connection: endedUnseen (tests wrap it)
	mesh     *mesh
	retained *retained
	sessions *session.Tracker
	durable  *session.Durable
	flow     *flow
	metrics  *metrics

	st          atomic.Pointer[store.Store]
	storeReady  chan struct{}         // closed once the store is open and retained messages are loaded
	storeErr    atomic.Pointer[error] // why the store could not be opened yet (openStoreRetrying)
	quorum      atomic.Pointer[error] // the store's streams without a leader at the last check (watchQuorum)
	listenersUp atomic.Bool
	tls         tlsListeners // certreload.go
	reloadMu    sync.Mutex   // Reload
	admin       *http.Server
	adminAddr   string

	ctx      context.Context // background work, cancelled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	started  atomic.Bool
	closing  atomic.Bool
	draining atomic.Bool // Drain: new clients refused, connected ones sent away

	sysCount, sysCountedAt atomic.Int64 // mochi's retained $SYS topics, and when counted (retainedFull)
	closeOnce              sync.Once
	stopOnce               sync.Once // StopClients
	slow                   sync.Map  // *nats.Subscription → messages it had dropped when last seen

	syncMu      sync.Mutex // interest sync rounds (background.go)
	syncWaiting []chan struct{}
	syncRunning bool
	noisy       *ratelog.Log // hot-path warnings, by message
}

// warnEvery logs a warning that may repeat on a hot path (per message, per
// connection) at most once every ten seconds.
func (n *Node) warnEvery(msg string, args ...any) {
	n.noisy.Warn(n.log, msg, msg, args...)
}

// New builds a node from a config (filled by SetDefaults and checked by
// Validate, which New runs again). Nothing listens until Start.
func New(cfg *config.Node, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	own := *cfg // the caller may go on using its copy
	cfg = &own
	n := &Node{
		cfg: cfg, name: cfg.Node.Name, instance: randomHex(8),
		log: slog.New(redact{log.Handler()}).With("node", cfg.Node.Name), storeReady: make(chan struct{}), noisy: ratelog.New(10 * time.Second),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.tls = tlsListeners{byName: map[string]listeners.Listener{}, running: slices.Clone(cfg.Listeners)}
	n.retained = &retained{n: n}
	n.flow = &flow{n: n, maxInflight: uint16(cfg.MQTT.MaxInflight)}
	n.metrics = newMetrics(n)
	var err error
	if n.broker, err = newBroker(n); err != nil {
		return nil, err
	}
	n.sessions, n.durable = session.New(n.sessionEnv())
	n.ended = n.endedUnseen
	return n, nil
}

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// Start joins the mesh, opens the store and the listeners, and returns once
// clients can connect. It waits for the replicated store (retained messages,
// session registry) unless the node is the first of a cluster (mesh.listen
// and no peers): that store forms when a second node joins. If the store is
// still not up after ten mesh timeouts, Start returns anyway and the node
// serves without it until it is (Healthy reports that).
func (n *Node) Start(ctx context.Context) error {
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("node: already started")
	}
	if err := n.start(ctx); err != nil {
		n.Close()
		return err
	}
	addrs := make([]any, 0, len(n.cfg.Listeners))
	for _, l := range n.cfg.Listeners {
		addrs = append(addrs, slog.String(l.Name, n.ListenerAddr(l.Name)))
	}
	n.log.Info("node started", slog.Group("listeners", addrs...), "route", n.RouteAddr(), "admin", n.AdminAddr())
	return nil
}

func (n *Node) start(ctx context.Context) error {
	if err := os.MkdirAll(n.cfg.Node.DataDir, 0o750); err != nil {
		return fmt.Errorf("node.data_dir: %w", err)
	}
	if err := n.joinMesh(ctx); err != nil {
		return err
	}
	n.wg.Add(2)
	go n.runStore()
	go n.forgetACLs()
	if n.waitsForStore() {
		wait := 10 * n.cfg.Mesh.Timeout.D()
		select {
		case <-n.storeReady:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
			var cause error
			if p := n.storeErr.Load(); p != nil {
				cause = *p
			}
			n.log.Warn("store not ready: serving without replicated retained messages and sessions until it is", "waited", wait, "error", cause)
		}
	}
	for _, lc := range n.cfg.Listeners {
		l, err := n.newListener(lc)
		if err != nil {
			return err
		}
		if lc.TLS != nil {
			n.reloadMu.Lock()
			n.tls.byName[lc.Name] = l
			n.reloadMu.Unlock()
		}
		if err := n.broker.AddListener(guard(l, n.cfg.MQTT.MaxPacketSize, n.ended, &n.conns)); err != nil {
			return fmt.Errorf("listener %s: %w", lc.Name, err)
		}
	}
	if err := n.broker.Serve(); err != nil {
		return err
	}
	n.listenersUp.Store(true)
	return n.startAdmin()
}

// waitsForStore reports whether the store can form without other nodes
// joining later.
func (n *Node) waitsForStore() bool {
	m := n.cfg.Mesh
	return m.URL != "" || m.Listen == "" || len(m.Peers) > 0
}

// joinMesh starts the embedded NATS server (or not, with mesh.url) and opens
// the node's three connections.
func (n *Node) joinMesh(ctx context.Context) error {
	var err error
	if n.cfg.Mesh.URL == "" {
		if n.ns, n.token, err = startEmbedded(n.cfg, n.log, &n.closing); err != nil {
			return err
		}
	}
	onErr := nats.ErrorHandler(n.natsError)
	lost, back := nats.DisconnectErrHandler(n.meshLost), nats.ReconnectHandler(n.meshBack)
	if n.data, err = connect(ctx, n.cfg, n.ns, n.token, "data", nats.NoEcho(), onErr, lost, back); err != nil {
		return err
	}
	if n.ns == nil {
		if err := checkServerVersion(n.data.ConnectedServerVersion()); err != nil {
			return fmt.Errorf("mesh.url %s: %w", n.data.ConnectedUrlRedacted(), err)
		}
	}
	if n.queue, err = connect(ctx, n.cfg, n.ns, n.token, "queue", onErr); err != nil {
		return err
	}
	if n.ctrl, err = connect(ctx, n.cfg, n.ns, n.token, "ctrl", nats.NoEcho(), onErr); err != nil {
		return err
	}
	n.mesh = newMesh(n, n.data, n.queue)
	if _, err = n.ctrl.Subscribe(n.mesh.subj.Sync(), n.answerSync); err != nil {
		return err
	}
	if _, err = n.ctrl.Subscribe(n.mesh.subj.Takeover(n.name), n.sessions.OnTakeover); err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second) // nats.go wants a deadline
	defer cancel()
	return n.ctrl.FlushWithContext(fctx)
}

// minNATS is the oldest nats-server the node works with: the session
// anchors are consumers with several filter subjects (nats-server 2.10).
const minNATS = "2.10.0"

// checkServerVersion refuses an external nats-server older than minNATS:
// with 2.9 every persistent session's queue failed to open ("multiple
// consumer filter subjects not supported"), retried for ever, while the
// node said it was healthy and its sessions got nothing.
func checkServerVersion(v string) error {
	if !versionAtLeast(v, minNATS) {
		return fmt.Errorf("nats-server %s is too old: mqlb needs %s or later (consumers with several filter subjects)", v, minNATS)
	}
	return nil
}

// versionAtLeast compares dotted release numbers ("2.9.10" < "2.10.0");
// a pre-release or build suffix is ignored, and what does not parse is not
// at least anything.
func versionAtLeast(v, min string) bool {
	parse := func(s string) ([3]int, bool) {
		var out [3]int
		s = strings.TrimPrefix(s, "v")
		if i := strings.IndexAny(s, "-+"); i >= 0 {
			s = s[:i]
		}
		parts := strings.Split(s, ".")
		if len(parts) != 3 {
			return out, false
		}
		for i, p := range parts {
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 {
				return out, false
			}
			out[i] = n
		}
		return out, true
	}
	a, ok := parse(v)
	b, _ := parse(min)
	return ok && slices.Compare(a[:], b[:]) >= 0
}

// meshLost and meshBack log the data connection to the mesh going and
// coming back (/healthz and mqlb_node_up follow it too); quiet while the
// node closes.
func (n *Node) meshLost(nc *nats.Conn, err error) {
	if !n.closing.Load() {
		n.log.Warn("mesh connection lost: reconnecting", "error", err)
	}
}

func (n *Node) meshBack(nc *nats.Conn) {
	if !n.closing.Load() {
		n.log.Info("mesh connection restored", "server", nc.ConnectedUrlRedacted())
	}
}

// natsError counts messages a slow mesh subscription dropped.
func (n *Node) natsError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrSlowConsumer) || sub == nil {
		n.log.Warn("mesh connection error", "error", err)
		return
	}
	total, _ := sub.Dropped()
	prev, _ := n.slow.Swap(sub, total)
	before, _ := prev.(int)
	n.metrics.droppedN("mesh_slow_consumer", max(total-before, 0))
	n.warnEvery("mesh subscription too slow: messages dropped", "subject", sub.Subject, "dropped", total)
}

// store returns the replicated store, or nil while it is not open.
func (n *Node) store() *store.Store { return n.st.Load() }

// liveStore returns the store unless it is not open yet or cooling down
// after a failure.
func (n *Node) liveStore() (*store.Store, error) {
	st := n.st.Load()
	switch {
	case st == nil:
		return nil, store.ErrNotReady
	case !st.Usable():
		return nil, store.ErrDown
	}
	return st, nil
}

// ListenerAddr returns the address a listener is bound to ("" if unknown).
func (n *Node) ListenerAddr(name string) string {
	l, ok := n.broker.Listeners.Get(name)
	if !ok {
		return ""
	}
	return l.Address()
}

// RouteAddr returns the host:port the embedded NATS server accepts cluster
// routes on, for other nodes' mesh.peers ("" without routes).
func (n *Node) RouteAddr() string {
	if n.ns == nil {
		return ""
	}
	if a := n.ns.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Healthy returns nil when the listeners, the mesh and the store are up.
func (n *Node) Healthy() error {
	return n.healthy()
}

func (n *Node) healthy() error {
	switch {
	case !n.listenersUp.Load():
		return errors.New("listeners not up")
	case n.draining.Load():
		return errors.New("draining: clients are being sent to other nodes")
	case n.data == nil || !n.data.IsConnected() || !n.queue.IsConnected() || !n.ctrl.IsConnected():
		return errors.New("mesh not connected")
	}
	select {
	case <-n.storeReady:
	default:
		return errors.New("store not ready")
	}
	return n.storeUp()
}

// storeUp returns why the store cannot serve now: not open, cooling down
// after a failed operation, or a stream without a leader at the last
// quorum check.
func (n *Node) storeUp() error {
	if _, err := n.liveStore(); err != nil {
		return err
	}
	if p := n.quorum.Load(); p != nil && *p != nil {
		return *p
	}
	return nil
}

// Reload applies what can change while the node runs: users and ACL rules
// (auth), the shared subscription policy, max_offline_messages,
// qos0_max_delay, and the TLS listeners' certificates, keys and client CA,
// read again (applyTLS). Other changes need a restart, and a warning names
// them. An error changes nothing.
func (n *Node) Reload(cfg *config.Node) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	certs, err := n.planTLS(cfg)
	if err != nil {
		return err
	}
	if err := n.auth.Reload(authOptions(cfg.Auth)); err != nil {
		return err
	}
	n.applyTLS(certs)
	n.warnUnverified()
	if n.mesh != nil {
		n.mesh.policy.Store(cfg.SharedSubscriptions.Policy)
		n.mesh.maxDelay.Store(int64(cfg.Mesh.QoS0MaxDelay))
	}
	n.sessions.SetMaxOffline(cfg.Sessions.MaxOfflineMessages)
	running := *n.cfg
	running.Listeners = n.tls.running
	if keys := restartOnly(&running, cfg); len(keys) > 0 {
		n.log.Warn("config changes that apply on restart only: the node runs with the old values", "changed", strings.Join(keys, ", "))
	}
	return nil
}

// restartOnly names the sections of the config that changed from the
// running one (cur: as the node started, with the listeners' tls sections
// as reloads applied them) in ways Reload does not apply. Reload applies
// auth, shared_subscriptions, sessions.max_offline_messages,
// mesh.qos0_max_delay and the TLS listeners' certificate files and client
// CA (config.TLS.Reloaded); mqlb node applies log.level,
// process.gc_headroom, node.drain_rate and node.drain_timeout.
func restartOnly(cur, next *config.Node) []string {
	var keys []string
	differ := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	n1, n2 := cur.Node, next.Node
	n1.DrainRate, n1.DrainTimeout, n2.DrainRate, n2.DrainTimeout = 0, 0, 0, 0 // mqlb node applies them
	differ("node", n1, n2)
	differ("listeners", cur.Listeners, next.Listeners)
	m1, m2 := cur.Mesh, next.Mesh
	m1.QoS0MaxDelay, m2.QoS0MaxDelay = 0, 0
	differ("mesh", m1, m2)
	s1, s2 := cur.Sessions, next.Sessions
	s1.MaxOfflineMessages, s2.MaxOfflineMessages = 0, 0
	differ("sessions", s1, s2)
	differ("mqtt", cur.MQTT, next.MQTT)
	differ("admin", cur.Admin, next.Admin)
	differ("log.format", cur.Log.Format, next.Log.Format)
	return keys
}

// Close stops the node: listeners close and clients are disconnected
// (MQTT 5: DISCONNECT 0x8B server shutting down), persistent sessions are
// recorded as disconnected in the registry, then the node leaves the mesh.
// Messages queued here for disconnected sessions are lost; their
// subscriptions are restored on the node where the client reconnects.
func (n *Node) Close() error {
	n.closeOnce.Do(n.close)
	return nil
}

// StopClients closes the node's MQTT listeners and disconnects its clients
// (MQTT 5: DISCONNECT 0x8B), recording persistent sessions in the registry,
// while the node stays in the mesh; it returns once they are gone (at most
// 10 s). Close starts with it. To stop a whole cluster, call it on every
// node before closing any: the registry is replicated across the nodes, and
// the last nodes to close could not record their sessions once the others
// had left.
func (n *Node) StopClients() {
	n.stopOnce.Do(func() {
		n.listenersUp.Store(false)
		_ = n.broker.Close()
		deadline := time.Now().Add(10 * time.Second)
		waitGroup(&n.broker.Listeners.ClientsWg, time.Until(deadline))
		n.conns.wait(deadline) // and for the ends mochi never reported (endedUnseen)
	})
}

// ClusterStopping tells the node that its whole cluster is being stopped:
// peers going away from now on is expected, and the mesh logs it at debug
// level instead of as errors. Close still has to be called.
func (n *Node) ClusterStopping() { n.closing.Store(true) }

func (n *Node) close() {
	n.log.Info("node stopping")
	n.closing.Store(true)
	if n.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = n.admin.Shutdown(ctx)
		cancel()
	}
	n.StopClients()
	n.cancel()
	n.wg.Wait()
	for _, c := range []*nats.Conn{n.data, n.queue, n.ctrl} {
		if c != nil {
			c.Close()
		}
	}
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
	}
	n.log.Info("node stopped")
}

// waitGroup waits for wg, at most d.
func waitGroup(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}
