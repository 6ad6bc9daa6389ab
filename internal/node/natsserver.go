package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/config"
)

// Limits of the embedded NATS server. MQTT topics may be 64 KiB and, escaped,
// longer in a subject, so control lines are allowed far beyond NATS' 4 KiB
// default; a message larger than maxMeshPayload reaches only the node it was
// published on (counted as dropped, reason too_large).
//
// The server closes a connection whose unsent messages exceed MaxPending (a
// slow consumer) and everything pending on it is lost. The node's data
// connection can fall that far behind when a node receives more from the
// mesh than it injects (QoS 0 at full rate, a busy machine): NATS' default
// of 64 MiB is raised to the bytes one of the node's own inboxes holds, so
// a burst is kept, or dropped and counted there (mesh_slow_consumer), before
// NATS closes the connection.
const (
	maxControlLine = 256 << 10
	maxMeshPayload = 8 << 20
	maxMeshPending = inboxBytes
)

// routeErrorReports: while a peer is down, NATS tries its route again every
// second and by default logs every failed attempt at error, one line per
// route of its pool (4 per second per dead peer seen on a 3-node cluster).
// It logs the first failure, then every routeErrorReports-th (once a
// minute); the others at debug.
const routeErrorReports = 60

// startEmbedded runs the node's NATS server: client port on loopback only
// with a random token (nats-server 2.15 starts cluster routing only after its
// client accept loop, so DontListen cannot be used with routes; only
// in-process connections of this node know the token), routes on
// mesh.listen, JetStream in data_dir/jetstream. A node with mesh.listen and
// no peers lists itself as its only route: NATS runs JetStream clustered only
// with configured routes, and ignores a route to itself once connected.
func startEmbedded(cfg *config.Node, log *slog.Logger, closing *atomic.Bool) (*server.Server, string, error) {
	token := randomHex(16)
	opts := &server.Options{
		ServerName:             cfg.Node.Name,
		Host:                   "127.0.0.1",
		Port:                   server.RANDOM_PORT,
		Authorization:          token,
		NoSigs:                 true,
		JetStream:              true,
		StoreDir:               filepath.Join(cfg.Node.DataDir, "jetstream"),
		MaxControlLine:         maxControlLine,
		MaxPayload:             maxMeshPayload,
		MaxPending:             maxMeshPending,
		DisableJetStreamBanner: true,
		ReconnectErrorReports:  routeErrorReports,
	}
	if cfg.Mesh.Listen != "" {
		if err := clusterOptions(cfg, opts); err != nil {
			return nil, "", err
		}
		if err := secureRoutes(cfg.Mesh, opts, log); err != nil {
			return nil, "", err
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, "", fmt.Errorf("mesh: %w", err)
	}
	debug := log.Enabled(context.Background(), slog.LevelDebug)
	nl := &natsLogger{log: log.With("component", "nats"), closing: closing, started: time.Now(), fatal: make(chan string, 1)}
	srv.SetLoggerV2(nl, debug, false, false)
	go srv.Start()
	if err := waitReady(srv, nl.fatal, cfg.Mesh.Listen); err != nil {
		srv.Shutdown()
		return nil, "", err
	}
	return srv, token, nil
}

// waitReady waits up to 10 s for the server to accept connections, and
// fails at once with the reason when it cannot start (a port taken): the
// server logs that, and would leave a bare timeout.
func waitReady(srv *server.Server, fatal <-chan string, listen string) error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case msg := <-fatal:
			if strings.Contains(msg, "router port") {
				return fmt.Errorf("mesh.listen %s: %s", listen, msg)
			}
			return fmt.Errorf("mesh: embedded NATS server: %s", msg)
		default:
		}
		if srv.ReadyForConnections(100 * time.Millisecond) {
			return nil
		}
	}
	return errors.New("mesh: embedded NATS server not ready after 10s")
}

func clusterOptions(cfg *config.Node, opts *server.Options) error {
	host, portStr, err := net.SplitHostPort(cfg.Mesh.Listen)
	if err != nil {
		return fmt.Errorf("mesh.listen: %w", err)
	}
	port, _ := strconv.Atoi(portStr)
	routes := cfg.Mesh.Peers
	if len(routes) == 0 {
		if port == 0 {
			if port, err = freePort(host); err != nil {
				return err
			}
		}
		routes = []string{"nats-route://" + net.JoinHostPort(dialable(host), strconv.Itoa(port))}
	} else if port == 0 {
		port = server.RANDOM_PORT
	}
	opts.Cluster = server.ClusterOpts{
		Name:      cfg.Mesh.ClusterName,
		Host:      host,
		Port:      port,
		Advertise: cfg.Mesh.Advertise,
	}
	opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
	return nil
}

// freePort asks the kernel for a free port on host. Only a node that lists
// itself as its route needs to know its port before NATS binds it.
func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("mesh.listen: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func dialable(host string) string {
	if host == "" || host == "0.0.0.0" || host == "::" {
		return "127.0.0.1"
	}
	return host
}

// connect opens one NATS connection of this node: in-process to the embedded
// server, or to the external cluster.
func connect(ctx context.Context, cfg *config.Node, srv *server.Server, token, role string, extra ...nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{
		nats.Name("mqlb-" + cfg.Node.Name + "-" + role),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(maxMeshPayload * 2),
	}, extra...)
	url := cfg.Mesh.URL
	if srv != nil {
		url = ""
		opts = append(opts, nats.InProcessServer(srv), nats.Token(token))
	} else {
		ext, err := externalOptions(cfg.Mesh)
		if err != nil {
			return nil, err
		}
		opts = append(opts, ext...)
	}
	deadline, ok := ctx.Deadline()
	if ok {
		opts = append(opts, nats.Timeout(time.Until(deadline)))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("mesh: connect %s: %w", role, err)
	}
	return nc, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// natsLogger adapts nats-server logging to slog. The server's notices are
// start-up chatter and go to debug, as does everything once the node is
// closing (routes breaking then is expected).
type natsLogger struct {
	log     *slog.Logger
	closing *atomic.Bool
	started time.Time
	fatal   chan string // the first fatal error, for waitReady
}

// forming are warnings NATS repeats while a cluster forms: expected for a
// while after start, worth a warning only when they go on.
var forming = []string{"Waiting for routing", "JetStream has not established contact", "JetStream is not current"}

func (l *natsLogger) at(level slog.Level, format string, v []any) {
	if l.closing.Load() {
		level = slog.LevelDebug
	}
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	msg := fmt.Sprintf(format, v...)
	if remote, why, ok := routeRefusal(msg); ok && level >= slog.LevelWarn {
		l.log.Warn("mesh route refused", "remote", remote, "reason", why)
		return
	}
	switch {
	case level < slog.LevelWarn:
	case strings.HasPrefix(msg, "Metalayer blocking snapshot"),
		strings.HasSuffix(msg, "snapshot can not be installed while catchups running"), // deferred while a peer catches up, retried
		time.Since(l.started) < time.Minute && hasAnyPrefix(msg, forming):
		level = slog.LevelDebug
		if !l.log.Enabled(context.Background(), level) {
			return
		}
	}
	l.log.Log(context.Background(), level, msg)
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Noticef logs at debug, but a slow consumer closed by the server at warn:
// the messages pending on that connection were lost.
func (l *natsLogger) Noticef(format string, v ...any) {
	level := slog.LevelDebug
	if strings.Contains(format, "Slow Consumer") || strings.Contains(fmt.Sprint(v...), "Slow Consumer") {
		level = slog.LevelWarn
	}
	l.at(level, format, v)
}

func (l *natsLogger) Warnf(format string, v ...any) { l.at(slog.LevelWarn, format, v) }
func (l *natsLogger) Fatalf(format string, v ...any) {
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default:
	}
	l.at(slog.LevelError, format, v)
}
func (l *natsLogger) Errorf(format string, v ...any) { l.at(slog.LevelError, format, v) }
func (l *natsLogger) Debugf(format string, v ...any) { l.at(slog.LevelDebug, format, v) }
func (l *natsLogger) Tracef(string, ...any)          {}
