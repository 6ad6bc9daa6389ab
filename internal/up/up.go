// Package up runs the whole system in one process with no config file: N
// clustered broker nodes and the load balancer in front of them, with its
// admin API and dashboard (mqlb up).
package up

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mqlb/mqlb/internal/admin"
	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/lb"
	"github.com/mqlb/mqlb/internal/node"
)

// Options shape the system.
type Options struct {
	Nodes     int    // how many broker nodes (default 3)
	Listen    string // the load balancer's MQTT address (default 127.0.0.1:1883)
	Admin     string // the admin API and dashboard (default 127.0.0.1:9090)
	NodePort  int    // node i listens on NodePort+i-1 (default 18831; 0 = any free port)
	DataDir   string // where nodes keep retained messages and sessions ("" = a temporary directory)
	AccessLog string // the LB's access log: stdout, stderr, off or a file (default off)
	// Durability is the nodes' sessions.durability ("" = the node default:
	// replicated with several nodes).
	Durability string
	// TempDataDir says DataDir was made for this run: Close removes it
	// (mqlb up makes it itself, to remove it on every way out).
	TempDataDir bool
	Log         *slog.Logger
}

func (o *Options) defaults() {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	o.Listen = cmp(o.Listen, "127.0.0.1:1883")
	o.Admin = cmp(o.Admin, "127.0.0.1:9090")
	o.AccessLog = cmp(o.AccessLog, "off")
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// System is the running system.
type System struct {
	Nodes []*node.Node
	LB    *lb.LB
	opt   Options
	tmp   string // temporary data directory to remove, if any
	token string // mesh.token of this run's cluster, made at start
}

// Start starts the nodes one after the other (each joins the earlier ones'
// routes) and then the load balancer in front of them. Run serves it.
func Start(ctx context.Context, o Options) (*System, error) {
	o.defaults()
	if o.Nodes < 1 || o.Nodes > 64 {
		return nil, fmt.Errorf("--nodes: want 1 to 64, got %d", o.Nodes)
	}
	s := &System{opt: o, token: meshToken()}
	if s.opt.DataDir == "" {
		dir, err := os.MkdirTemp("", "mqlb-up-")
		if err != nil {
			return nil, err
		}
		s.opt.DataDir, s.opt.TempDataDir = dir, true
	}
	if s.opt.TempDataDir {
		s.tmp = s.opt.DataDir
	}
	if err := s.startNodes(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.startLB(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *System) startNodes(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	var routes []string
	for i := 1; i <= s.opt.Nodes; i++ {
		cfg := s.nodeConfig(i, routes)
		n, err := node.New(cfg, s.opt.Log)
		if err != nil {
			return fmt.Errorf("node%d: %w", i, err)
		}
		if err := n.Start(ctx); err != nil {
			return fmt.Errorf("node%d: %w", i, err)
		}
		s.Nodes = append(s.Nodes, n)
		routes = append(routes, n.RouteAddr())
	}
	return s.waitHealthy(ctx)
}

// waitHealthy waits until every node has its listeners, mesh and replicated
// store (which forms once the nodes have joined), so the load balancer starts
// in front of a cluster that can resume sessions.
func (s *System) waitHealthy(ctx context.Context) error {
	for {
		var err error
		for _, n := range s.Nodes {
			if err = n.Healthy(); err != nil {
				err = fmt.Errorf("%s: %w", n.Name(), err)
				break
			}
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// nodeConfig is node i's config: a public listener for direct clients and
// one the load balancer alone uses, with the PROXY protocol so the node sees
// each client's own address.
func (s *System) nodeConfig(i int, peers []string) *config.Node {
	name := fmt.Sprintf("node%d", i)
	public := "127.0.0.1:0"
	if s.opt.NodePort > 0 {
		public = fmt.Sprintf("127.0.0.1:%d", s.opt.NodePort+i-1)
	}
	cfg := &config.Node{
		Node: config.NodeIdentity{Name: name, DataDir: filepath.Join(s.opt.DataDir, name)},
		Listeners: []config.NodeListener{
			{Name: "mqtt", Type: "tcp", Address: public},
			{Name: "lb", Type: "tcp", Address: "127.0.0.1:0",
				ProxyProtocol: &config.ProxyAccept{Accept: true, Trusted: []string{"127.0.0.1/32"}}},
		},
		Mesh: config.Mesh{ClusterName: "mqlb-up", Listen: "127.0.0.1:0", Peers: append([]string(nil), peers...),
			Token: s.token},
		Admin:    config.Admin{Address: "127.0.0.1:0"},
		Sessions: config.Sessions{Durability: s.opt.Durability},
	}
	if s.opt.Nodes == 1 {
		// JetStream in cluster mode cannot elect a leader alone: one node
		// runs standalone, with its store local.
		cfg.Mesh.Listen = ""
	}
	cfg.SetDefaults()
	return cfg
}

// lbConfig is the load balancer in front of the nodes' LB listeners.
func (s *System) lbConfig() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listeners: [{ name: mqtt, address: %q, upstream: cluster }]\n", s.opt.Listen)
	b.WriteString("upstreams:\n  cluster:\n    balance: client_id\n    proxy_protocol: v2\n")
	b.WriteString("    health_check: { type: mqtt, interval: 2s, timeout: 1s, rise: 1, fall: 2 }\n    servers:\n")
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, "      - { name: %s, address: %q }\n", n.Name(), n.ListenerAddr("lb"))
	}
	fmt.Fprintf(&b, "admin: { address: %q }\naccess_log: { path: %q }\nlimits: { shutdown_grace: 5s }\n", s.opt.Admin, s.opt.AccessLog)
	return b.String()
}

func (s *System) startLB() error {
	cfg, err := config.Parse([]byte(s.lbConfig()))
	if err != nil {
		return fmt.Errorf("load balancer config: %w", err)
	}
	l, err := lb.New(cfg, lb.Options{Log: s.opt.Log})
	if err != nil {
		return fmt.Errorf("load balancer: %w", err)
	}
	var nodes []admin.Node
	for _, n := range s.Nodes {
		nodes = append(nodes, admin.Node{Name: n.Name(), URL: "http://" + n.AdminAddr()})
	}
	l.SetNodes(nodes) // the dashboard's cluster view
	s.LB = l
	return nil
}

// Run serves until ctx is done, then stops the load balancer (open
// connections get a few seconds) and the nodes.
func (s *System) Run(ctx context.Context) error {
	err := s.LB.Run(ctx)
	s.LB = nil
	return errors.Join(err, s.Close())
}

// Close stops the nodes (the load balancer stops with Run's context) and
// removes a temporary data directory.
func (s *System) Close() error {
	var errs []error
	for _, n := range s.Nodes {
		n.ClusterStopping() // no route errors from the nodes stopped last
	}
	for _, n := range s.Nodes {
		n.StopClients() // while every node is there to record their sessions
	}
	for i := len(s.Nodes) - 1; i >= 0; i-- {
		errs = append(errs, s.Nodes[i].Close())
	}
	s.Nodes = nil
	if s.tmp != "" {
		errs = append(errs, os.RemoveAll(s.tmp))
	}
	return errors.Join(errs...)
}

// Describe prints what runs where and how to connect.
func (s *System) Describe(w io.Writer) {
	lbAddr := s.LB.ListenerAddr("mqtt")
	host, port := splitHostPort(lbAddr)
	fmt.Fprintf(w, "mqlb up: %d clustered broker nodes behind the load balancer\n\n", len(s.Nodes))
	fmt.Fprintf(w, "  load balancer  mqtt://%s   (balance client_id, PROXY v2 to the nodes)\n", lbAddr)
	fmt.Fprintf(w, "  admin          http://%s/ui/   (API /api/v1/upstreams, metrics /metrics)\n", s.LB.AdminAddr())
	fmt.Fprintf(w, "                 mqlb ctl --admin http://%s servers|cluster|clients\n", s.LB.AdminAddr())
	for _, n := range s.Nodes {
		fmt.Fprintf(w, "  %-14s mqtt://%s   (metrics http://%s/metrics)\n", n.Name(), n.ListenerAddr("mqtt"), n.AdminAddr())
	}
	fmt.Fprintf(w, "  data           %s%s\n\n", s.opt.DataDir, map[bool]string{true: " (temporary)", false: ""}[s.tmp != ""])
	fmt.Fprintf(w, "Try it:\n  mosquitto_sub -h %s -p %s -t 'a/#' -v &\n  mosquitto_pub -h %s -p %s -t a/b -m hi\n", host, port, host, port)
	fmt.Fprintf(w, "\nCtrl-C stops everything.\n")
}

func splitHostPort(addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr, ""
	}
	return addr[:i], addr[i+1:]
}

// startupTimeout bounds how long mqlb up waits for the cluster to form.
const startupTimeout = 60 * time.Second

// meshToken returns a random cluster secret: the nodes of one mqlb up
// authenticate their routes with it, so nothing else on the machine joins.
func meshToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
