package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mqlb/mqlb/internal/topic"
)

// Node is the configuration of one broker node (mqlb node). Every key is
// documented in examples/node.yaml.
type Node struct {
	Node                NodeIdentity   `yaml:"node"`
	Listeners           []NodeListener `yaml:"listeners"`
	Mesh                Mesh           `yaml:"mesh"`
	SharedSubscriptions SharedSubs     `yaml:"shared_subscriptions"`
	Sessions            Sessions       `yaml:"sessions"`
	MQTT                MQTTLimits     `yaml:"mqtt"`
	Auth                NodeAuth       `yaml:"auth"`
	Admin               Admin          `yaml:"admin"`
	Log                 Log            `yaml:"log"`
	Process             NodeProcess    `yaml:"process"`

	Source
}

// NodeProcess configures the node's process (mqlb node; mqlb up applies
// the default).
type NodeProcess struct {
	// GCHeadroom is how many bytes the Go heap may grow over what the last
	// collection found live before the next one, while the live heap is
	// small (GOGC from 100 up to 400; internal/gcpace). Default 64 MiB; 0
	// leaves Go's default (GOGC 100), as does GOGC set in the environment.
	GCHeadroom int `yaml:"gc_headroom"`
}

// DefaultGCHeadroom is process.gc_headroom when left out: 64 MiB.
const DefaultGCHeadroom = 64 << 20

// NodeIdentity names the node and where it keeps its data.
type NodeIdentity struct {
	Name    string `yaml:"name"`     // unique in the cluster
	DataDir string `yaml:"data_dir"` // JetStream store; default ./data/<name>
	// On SIGTERM the node disconnects its clients at DrainRate per second
	// (0: all at once), for at most DrainTimeout, before it stops.
	DrainRate    float64  `yaml:"drain_rate"`
	DrainTimeout Duration `yaml:"drain_timeout"`
}

// NodeListener is one MQTT listener of a broker node.
type NodeListener struct {
	Name             string       `yaml:"name"`
	Type             string       `yaml:"type"` // tcp | tls | ws | wss
	Address          string       `yaml:"address"`
	Path             string       `yaml:"path"` // ws and wss only
	TLS              *TLS         `yaml:"tls"`
	ProxyProtocol    *ProxyAccept `yaml:"proxy_protocol"`
	UsernameFromCert bool         `yaml:"username_from_cert"`
}

// Mesh configures how nodes find each other: an embedded NATS server joined to
// its peers by routes, or an external NATS cluster.
type Mesh struct {
	ClusterName string   `yaml:"cluster_name"`
	Listen      string   `yaml:"listen"`     // embedded NATS route address; "" = no routes (single node)
	Advertise   string   `yaml:"advertise"`  // route address peers should dial, when listen is not reachable as is
	Peers       []string `yaml:"peers"`      // route URLs of other nodes
	URL         string   `yaml:"url"`        // external NATS instead of the embedded server
	Replicas    int      `yaml:"replicas"`   // JetStream KV replicas; 0 = min(3, cluster size)
	Timeout     Duration `yaml:"timeout"`    // how long a node waits for its peers
	Token       string   `yaml:"token"`      // cluster secret every route presents (and the token for mesh.url)
	TokenFile   string   `yaml:"token_file"` // read the token from this file (a mounted secret) instead
	TLS         *MeshTLS `yaml:"tls"`        // routes over TLS with certificates of one CA
	Batch       *bool    `yaml:"batch"`      // publishes to one subject that wait together go as one NATS message; default false
	// QoS0MaxDelay drops a QoS 0 message from another node that took this
	// much longer than that node's quickest recent ones; default 5s, 0 never.
	QoS0MaxDelay Duration `yaml:"qos0_max_delay"`

	tokenRead bool // Token was read from TokenFile
}

// SharedSubs configures $share/{group}/{filter} delivery.
type SharedSubs struct {
	Policy string `yaml:"policy"` // local_first | round_robin | random
}

// Sessions bounds persistent sessions.
type Sessions struct {
	MaxOfflineMessages int      `yaml:"max_offline_messages"`
	MaxExpiry          Duration `yaml:"max_expiry"`
	// Durability: replicated (QoS 1/2 messages of persistent sessions in
	// replicated JetStream storage) or memory (on the owning node only).
	Durability string `yaml:"durability"`
}

// MQTTLimits are protocol limits the broker announces and enforces.
type MQTTLimits struct {
	MaxClients     int64 `yaml:"max_clients"`     // 0 = no limit
	MaxPacketSize  int   `yaml:"max_packet_size"` // bytes; default 1 MiB; 0 = the protocol's 256 MB
	ReceiveMaximum int   `yaml:"receive_maximum"` // QoS 1/2 publishes a client may have unacknowledged
	MaxInflight    int   `yaml:"max_inflight"`    // QoS 1/2 messages the broker keeps per session
	MaxQoS         int   `yaml:"max_qos"`         // 0, 1 or 2
	// MaxTopicAlias is the Topic Alias Maximum announced to v5 clients
	// (each alias holds a topic name for the connection); default 10,
	// mosquitto's max_topic_alias; 0 = no aliases.
	MaxTopicAlias int `yaml:"max_topic_alias"`
	// MaxKeepAlive caps a v5 client's keep-alive (CONNACK Server Keep
	// Alive); 0 = no cap.
	MaxKeepAlive Duration `yaml:"max_keep_alive"`

	MaxSubscriptionsPerClient int `yaml:"max_subscriptions_per_client"` // default 1000; 0 = no limit

	// MaxRetainedMessages bounds the cluster's retained messages (each node
	// holds all of them in memory, and the store on disk): past it a new
	// retained topic is delivered but not retained. Default
	// DefaultMaxRetained; 0 = no limit.
	MaxRetainedMessages int `yaml:"max_retained_messages"`

	// MaxQueuedBytes bounds what waits in the node to be written to one
	// client connection beyond what its socket took; over it the client is
	// disconnected as a slow consumer. Default DefaultMaxQueuedBytes, or
	// twice max_packet_size where that is more; at least max_packet_size.
	MaxQueuedBytes int `yaml:"max_queued_bytes"`
}

// NodeAuth configures client authentication and topic ACLs.
type NodeAuth struct {
	AllowAnonymous *bool     `yaml:"allow_anonymous"` // default true
	UsersFile      string    `yaml:"users_file"`
	ACL            []ACLRule `yaml:"acl"`
	ACLDefault     string    `yaml:"acl_default"` // allow | deny
	// Backends are credential stores tried in order; empty means the users
	// file alone.
	Backends []AuthBackend `yaml:"backends"`
}

// ACLRule is one topic rule; the first rule that applies and matches decides.
type ACLRule struct {
	Allow   bool     `yaml:"allow"`
	Access  string   `yaml:"access"` // publish | subscribe | all
	Topic   string   `yaml:"topic"`  // filter; %c = client id, %u = username
	Users   []string `yaml:"users"`
	Clients []string `yaml:"clients"`
}

// SharedPolicies are the shared subscription policy names.
var SharedPolicies = []string{"local_first", "round_robin", "random"}

// ListenerTypes are the node listener types.
var ListenerTypes = []string{"tcp", "tls", "ws", "wss"}

// LoadNode reads, decodes, fills defaults and validates a node config.
func LoadNode(file string) (*Node, error) { return load[Node](file) }

// ParseNode decodes, fills defaults and validates a node config.
func ParseNode(data []byte) (*Node, error) { return parse[Node](data) }

// SetDefaults fills every key left out. It is safe on a Node built in code
// (Lines nil): then a zero value means "not set".
func (n *Node) SetDefaults() {
	set := n.Lines.Set
	if n.Node.DataDir == "" && n.Node.Name != "" {
		n.Node.DataDir = filepath.Join("data", n.Node.Name)
	}
	if n.Node.DrainRate == 0 && !set("node.drain_rate") {
		n.Node.DrainRate = 500
	}
	if n.Node.DrainTimeout == 0 && !set("node.drain_timeout") {
		n.Node.DrainTimeout = Duration(20 * time.Second)
	}
	for i := range n.Listeners {
		n.Listeners[i].setDefaults(i)
	}
	n.setMeshDefaults()
	n.SharedSubscriptions.Policy = defaultString(n.SharedSubscriptions.Policy, "local_first")
	if n.Sessions.MaxOfflineMessages == 0 && !set("sessions.max_offline_messages") {
		n.Sessions.MaxOfflineMessages = 1000
	}
	defaultDuration(&n.Sessions.MaxExpiry, float64(24*time.Hour))
	if n.Sessions.Durability == "" {
		n.Sessions.Durability = "replicated"
		if m := n.Mesh; m.Replicas == 1 || (m.URL == "" && m.Listen == "") {
			n.Sessions.Durability = "memory" // nothing to replicate to
		}
	}
	n.setMQTTDefaults()
	if n.Auth.AllowAnonymous == nil {
		yes := true
		n.Auth.AllowAnonymous = &yes
	}
	n.Auth.ACLDefault = defaultString(n.Auth.ACLDefault, "allow")
	for i := range n.Auth.Backends {
		n.Auth.Backends[i].setDefaults()
	}
	for i := range n.Auth.ACL {
		n.Auth.ACL[i].Access = defaultString(n.Auth.ACL[i].Access, "all")
	}
	if !set("admin.address") && n.Admin.Address == "" {
		n.Admin.Address = "127.0.0.1:9091"
	}
	n.Log.Level = defaultString(n.Log.Level, "info")
	n.Log.Format = defaultString(n.Log.Format, "text")
	if n.Process.GCHeadroom == 0 && !set("process.gc_headroom") {
		n.Process.GCHeadroom = DefaultGCHeadroom
	}
}

func (l *NodeListener) setDefaults(i int) {
	l.Name = defaultString(l.Name, fmt.Sprintf("listener%d", i))
	if l.Type == "" {
		l.Type = "tcp"
		if l.TLS != nil {
			l.Type = "tls"
		}
	}
	if l.Path == "" && (l.Type == "ws" || l.Type == "wss") {
		l.Path = "/mqtt"
	}
	if l.TLS != nil {
		l.TLS.ClientAuth = defaultString(l.TLS.ClientAuth, "none")
		l.TLS.MinVersion = defaultString(l.TLS.MinVersion, "1.2")
	}
	if l.ProxyProtocol != nil && l.ProxyProtocol.Timeout == 0 {
		l.ProxyProtocol.Timeout = Duration(5 * time.Second)
	}
}

func (n *Node) setMeshDefaults() {
	m := &n.Mesh
	m.ClusterName = defaultString(m.ClusterName, "mqlb")
	defaultDuration(&m.Timeout, float64(2*time.Second))
	if m.QoS0MaxDelay == 0 && !n.Lines.Set("mesh.qos0_max_delay") {
		m.QoS0MaxDelay = Duration(5 * time.Second)
	}
	for i, p := range m.Peers {
		if !strings.Contains(p, "://") {
			m.Peers[i] = "nats-route://" + p
		}
	}
}

func (n *Node) setMQTTDefaults() {
	q := &n.MQTT
	if q.MaxPacketSize == 0 && !n.Lines.Set("mqtt.max_packet_size") {
		q.MaxPacketSize = DefaultMaxPacketSize
	}
	if q.MaxSubscriptionsPerClient == 0 && !n.Lines.Set("mqtt.max_subscriptions_per_client") {
		q.MaxSubscriptionsPerClient = DefaultMaxSubscriptions
	}
	if q.MaxRetainedMessages == 0 && !n.Lines.Set("mqtt.max_retained_messages") {
		q.MaxRetainedMessages = DefaultMaxRetained
	}
	if q.MaxQueuedBytes == 0 && !n.Lines.Set("mqtt.max_queued_bytes") {
		q.MaxQueuedBytes = max(DefaultMaxQueuedBytes, 2*q.packetCap())
	}
	if q.ReceiveMaximum == 0 {
		q.ReceiveMaximum = 1024
	}
	if q.MaxInflight == 0 {
		q.MaxInflight = 8192
	}
	if q.MaxTopicAlias == 0 && !n.Lines.Set("mqtt.max_topic_alias") {
		q.MaxTopicAlias = DefaultMaxTopicAlias
	}
	if q.MaxQoS == 0 && !n.Lines.Set("mqtt.max_qos") {
		q.MaxQoS = 2
	}
}

// DefaultMaxPacketSize is mqtt.max_packet_size when left out: 1 MiB.
const DefaultMaxPacketSize = 1 << 20

// DefaultMaxQueuedBytes is mqtt.max_queued_bytes when left out (unless
// twice max_packet_size is more): 32 MiB, which a burst of retained
// messages to a client reading at full speed stays under (see docs/node.md).
const DefaultMaxQueuedBytes = 32 << 20

// minQueuedBytes is the lowest mqtt.max_queued_bytes.
const minQueuedBytes = 64 << 10

// packetCap is the largest packet a client may send: max_packet_size, or
// the protocol's largest for 0.
func (q *MQTTLimits) packetCap() int {
	if q.MaxPacketSize == 0 {
		return 268_435_455
	}
	return q.MaxPacketSize
}

// DefaultMaxTopicAlias is mqtt.max_topic_alias when left out.
const DefaultMaxTopicAlias = 10

// DefaultMaxSubscriptions is mqtt.max_subscriptions_per_client when left out.
const DefaultMaxSubscriptions = 1000

// DefaultMaxRetained is mqtt.max_retained_messages' default: a million
// retained topics, a few hundred MB on each node at a few hundred bytes
// each.
const DefaultMaxRetained = 1_000_000

// AllowsAnonymous reports auth.allow_anonymous (true when unset).
func (a NodeAuth) AllowsAnonymous() bool { return a.AllowAnonymous == nil || *a.AllowAnonymous }

// Batches reports whether mesh publishes are batched (mesh.batch, default
// false). Every node reads batches either way.
func (m Mesh) Batches() bool { return m.Batch != nil && *m.Batch }

var tokenName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Validate checks the whole config and returns every problem found, joined.
func (n *Node) Validate() error {
	ck := &check{lines: n.Lines}
	switch {
	case n.Node.Name == "":
		ck.errorf("node.name", "a node name is required (unique in the cluster)")
	case !tokenName.MatchString(n.Node.Name) || len(n.Node.Name) > 64:
		ck.errorf("node.name", "want 1-64 letters, digits, '-' or '_', got %q", n.Node.Name)
	}
	if n.Node.DataDir == "" {
		ck.errorf("node.data_dir", "a data directory is required")
	}
	if r := n.Node.DrainRate; r < 0 || r > 1e6 {
		ck.errorf("node.drain_rate", "want 0 (all clients at once) to 1000000 per second, got %g", r)
	}
	if d := n.Node.DrainTimeout.D(); d < 0 {
		ck.errorf("node.drain_timeout", "want a duration of 0 or more, got %s", d)
	}
	ck.nodeListeners(n.Listeners)
	ck.mesh(&n.Mesh)
	ck.oneOf("shared_subscriptions.policy", n.SharedSubscriptions.Policy, SharedPolicies...)
	if s := n.Sessions; s.MaxOfflineMessages < 0 || s.MaxOfflineMessages > 65535 {
		ck.errorf("sessions.max_offline_messages", "want 0 (no limit beyond mqtt.max_inflight) to 65535, got %d", s.MaxOfflineMessages)
	}
	if e := n.Sessions.MaxExpiry.D(); e < time.Second || e > (1<<32-1)*time.Second {
		ck.errorf("sessions.max_expiry", "want a duration from 1s to 136y, got %s", e)
	}
	ck.oneOf("sessions.durability", n.Sessions.Durability, "replicated", "memory")
	ck.mqttLimits(&n.MQTT)
	ck.nodeAuth(&n.Auth)
	ck.admin(&n.Admin)
	ck.oneOf("log.level", n.Log.Level, "debug", "info", "warn", "error")
	ck.oneOf("log.format", n.Log.Format, "text", "json")
	if h := n.Process.GCHeadroom; h < 0 || h > 1<<40 {
		ck.errorf("process.gc_headroom", "want 0 (Go's default pacing) to 1099511627776 bytes, got %d", h)
	}
	return errors.Join(ck.errs...)
}

func (ck *check) nodeListeners(ls []NodeListener) {
	if len(ls) == 0 {
		ck.errorf("listeners", "at least one listener is required")
	}
	seen := newListenerSeen()
	for i, l := range ls {
		p := fmt.Sprintf("listeners[%d]", i)
		ck.listener(p, l.Name, l.Address, seen)
		ck.oneOf(p+".type", l.Type, ListenerTypes...)
		ck.nodeListener(p, l)
	}
}

func (ck *check) nodeListener(p string, l NodeListener) {
	secure := l.Type == "tls" || l.Type == "wss"
	switch {
	case secure && l.TLS == nil:
		ck.errorf(p+".tls", "type %s needs a tls block with cert and key", l.Type)
	case !secure && l.TLS != nil:
		ck.errorf(p+".tls", "type %s does not terminate TLS; use type tls or wss", l.Type)
	case l.TLS != nil:
		ck.tls(p+".tls", l.TLS)
		if l.TLS.Identity != nil {
			ck.errorf(p+".tls.identity", "only on load balancer listeners; a node takes the certificate CN as user name with username_from_cert")
		}
	}
	if l.Path != "" && l.Type != "ws" && l.Type != "wss" {
		ck.errorf(p+".path", "path is for ws and wss listeners only")
	} else if l.Path != "" && !strings.HasPrefix(l.Path, "/") {
		ck.errorf(p+".path", "want a path starting with /, got %q", l.Path)
	}
	ck.proxyAccept(p+".proxy_protocol", l.ProxyProtocol)
	if l.UsernameFromCert && l.TLS == nil && (l.ProxyProtocol == nil || !l.ProxyProtocol.Accept) {
		ck.errorf(p+".username_from_cert", "needs a client certificate: terminate TLS here (type tls or wss) or accept PROXY v2 from a load balancer that does")
	}
}

func (ck *check) mesh(m *Mesh) {
	ck.secretFile("mesh.token", m.TokenFile, &m.Token, &m.tokenRead)
	if !tokenName.MatchString(m.ClusterName) {
		ck.errorf("mesh.cluster_name", "want letters, digits, '-' or '_', got %q", m.ClusterName)
	}
	if m.URL != "" {
		if m.Listen != "" || len(m.Peers) > 0 {
			ck.errorf("mesh.url", "an external NATS url replaces the embedded server: leave mesh.listen and mesh.peers empty")
		}
		if !strings.Contains(m.URL, "://") {
			ck.errorf("mesh.url", "want a NATS URL such as nats://10.0.0.5:4222, got %q", m.URL)
		}
	}
	if m.Listen != "" {
		ck.hostPort("mesh.listen", m.Listen, true)
	} else if len(m.Peers) > 0 {
		ck.errorf("mesh.peers", "peers need mesh.listen: the address this node accepts routes on")
	}
	if m.Advertise != "" {
		ck.hostPort("mesh.advertise", m.Advertise, false)
	}
	for i, p := range m.Peers {
		ck.routeURL(fmt.Sprintf("mesh.peers[%d]", i), p)
	}
	if m.Replicas < 0 || m.Replicas > 5 {
		ck.errorf("mesh.replicas", "want 0 (automatic) to 5, got %d", m.Replicas)
	}
	ck.positive("mesh.timeout", m.Timeout)
	if m.QoS0MaxDelay < 0 {
		ck.errorf("mesh.qos0_max_delay", "want 0 (never drop) or a positive duration, got %v", m.QoS0MaxDelay.D())
	}
	ck.meshSecurity(m)
}

func (ck *check) routeURL(path, u string) {
	rest, ok := strings.CutPrefix(u, "nats-route://")
	if !ok {
		ck.errorf(path, "want host:port or nats-route://host:port, got %q", u)
		return
	}
	hostPort := rest
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		hostPort = rest[at+1:]
	}
	if _, _, err := net.SplitHostPort(hostPort); err != nil {
		ck.errorf(path, "want host:port or nats-route://host:port, got %q", rest)
	}
}

func (ck *check) mqttLimits(q *MQTTLimits) {
	if q.MaxClients < 0 {
		ck.errorf("mqtt.max_clients", "must be zero (no limit) or more")
	}
	if q.MaxPacketSize != 0 && (q.MaxPacketSize < 64 || q.MaxPacketSize > 268_435_455) {
		ck.errorf("mqtt.max_packet_size", "want 0 (no limit) or 64 to 268435455 bytes, got %d", q.MaxPacketSize)
	}
	if q.MaxQueuedBytes < max(minQueuedBytes, q.packetCap()) {
		ck.errorf("mqtt.max_queued_bytes", "want at least %d bytes (64 KiB, and no less than mqtt.max_packet_size: a packet that size must fit), got %d",
			max(minQueuedBytes, q.packetCap()), q.MaxQueuedBytes)
	}
	if q.ReceiveMaximum < 1 || q.ReceiveMaximum > 65535 {
		ck.errorf("mqtt.receive_maximum", "want 1 to 65535, got %d", q.ReceiveMaximum)
	}
	if q.MaxInflight < 1 || q.MaxInflight > 65535 {
		ck.errorf("mqtt.max_inflight", "want 1 to 65535, got %d", q.MaxInflight)
	}
	if q.MaxSubscriptionsPerClient < 0 {
		ck.errorf("mqtt.max_subscriptions_per_client", "want 0 (no limit) or more, got %d", q.MaxSubscriptionsPerClient)
	}
	if q.MaxRetainedMessages < 0 {
		ck.errorf("mqtt.max_retained_messages", "want 0 (no limit) or more, got %d", q.MaxRetainedMessages)
	}
	if q.MaxQoS < 0 || q.MaxQoS > 2 {
		ck.errorf("mqtt.max_qos", "want 0, 1 or 2, got %d", q.MaxQoS)
	}
	if q.MaxTopicAlias < 0 || q.MaxTopicAlias > 65535 {
		ck.errorf("mqtt.max_topic_alias", "want 0 (no aliases) to 65535, got %d", q.MaxTopicAlias)
	}
	if k := q.MaxKeepAlive.D(); k != 0 && (k < time.Second || k > 65535*time.Second || k%time.Second != 0) {
		ck.errorf("mqtt.max_keep_alive", "want 0 (no cap) or whole seconds from 1s to 65535s, got %s", k)
	}
}

func (ck *check) nodeAuth(a *NodeAuth) {
	if a.UsersFile != "" {
		ck.readable("auth.users_file", a.UsersFile)
	}
	ck.oneOf("auth.acl_default", a.ACLDefault, "allow", "deny")
	ck.authBackends(a)
	for i, r := range a.ACL {
		p := fmt.Sprintf("auth.acl[%d]", i)
		ck.oneOf(p+".access", r.Access, "publish", "subscribe", "all")
		if topic.ValidFilter(r.Topic) != nil {
			ck.errorf(p+".topic", "want an MQTT topic filter such as devices/%%c/#, got %q", r.Topic)
		}
	}
}

// Summary describes in a few lines what the node would run, for mqlb check.
func (n *Node) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s (data %s)\n", n.Node.Name, n.Node.DataDir)
	for _, l := range n.Listeners {
		fmt.Fprintf(&b, "  listener %s\n", l.summary())
	}
	m := n.Mesh
	mesh := "routes on " + m.Listen + ", peers " + hideUserinfo(strings.Join(m.Peers, " "))
	if m.URL != "" {
		mesh = "external NATS " + hideUserinfo(m.URL)
	} else if m.Listen == "" {
		mesh = "single node (no routes)"
	}
	replicas := "automatic"
	if m.Replicas > 0 {
		replicas = fmt.Sprint(m.Replicas)
	}
	fmt.Fprintf(&b, "  mesh %s: %s; store replicas %s; %s\n", m.ClusterName, mesh, replicas, m.security())
	fmt.Fprintf(&b, "  limits: max_packet_size %d, max_subscriptions_per_client %d, max_queued_bytes %d\n",
		n.MQTT.MaxPacketSize, n.MQTT.MaxSubscriptionsPerClient, n.MQTT.MaxQueuedBytes)
	fmt.Fprintf(&b, "  shared subscriptions %s; sessions (%s) keep up to %d offline messages, expire after at most %s\n",
		n.SharedSubscriptions.Policy, n.Sessions.Durability, n.Sessions.MaxOfflineMessages, n.Sessions.MaxExpiry)
	unverified := ""
	if n.Auth.AllowsAnonymous() && n.Auth.UsersFile == "" && len(n.Auth.Backends) == 0 {
		unverified = " (no credential store: usernames are not verified)"
	}
	fmt.Fprintf(&b, "  auth: anonymous %v%s, users file %q, %d ACL rules, default %s\n",
		n.Auth.AllowsAnonymous(), unverified, n.Auth.UsersFile, len(n.Auth.ACL), n.Auth.ACLDefault)
	for i, be := range n.Auth.Backends {
		extra := ""
		if be.Audience != "" {
			extra += fmt.Sprintf(", audience %q", be.Audience)
		}
		if be.Issuer != "" {
			extra += fmt.Sprintf(", issuer %q", be.Issuer)
		}
		fmt.Fprintf(&b, "  auth store %d: %s (timeout %s, cache %s%s)\n", i, be.Type, be.Timeout, be.CacheTTL, extra)
	}
	admin := "off"
	if n.Admin.Address != "" {
		admin = "http://" + n.Admin.Address + map[bool]string{true: " (token set)", false: " (no token)"}[n.Admin.Token != ""]
	}
	fmt.Fprintf(&b, "  admin: %s\n", admin)
	return b.String()
}

func (l NodeListener) summary() string {
	s := fmt.Sprintf("%s: %s %s", l.Name, l.Type, l.Address)
	if l.ProxyProtocol != nil && l.ProxyProtocol.Accept {
		s += ", PROXY from " + strings.Join(l.ProxyProtocol.Trusted, " ")
	}
	if l.UsernameFromCert {
		s += ", username from certificate"
	}
	if l.Type == "ws" || l.Type == "wss" {
		s += ", path " + l.Path
	}
	if l.TLS != nil && l.TLS.CertCount() > 1 {
		s += fmt.Sprintf(", %d certificates chosen by SNI", l.TLS.CertCount())
	}
	return s
}
