// Package config owns the YAML configuration of mqlb: the schema of the load
// balancer (mqlb run) and of a broker node (mqlb node), strict decoding with
// key paths and lines, defaults, and validation. It reads files and checks
// that what they name exists; it starts nothing.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/mqlb/mqlb/internal/balance"
)

// Config is the load balancer's configuration (mqlb run).
type Config struct {
	Listeners []Listener           `yaml:"listeners"`
	Upstreams map[string]*Upstream `yaml:"upstreams"`
	Limits    Limits               `yaml:"limits"`
	AccessLog AccessLog            `yaml:"access_log"`
	Admin     Admin                `yaml:"admin"`
	Log       Log                  `yaml:"log"`
	Process   Process              `yaml:"process"`

	Source
}

// Listener is one front-end address.
type Listener struct {
	Name          string       `yaml:"name"`
	Address       string       `yaml:"address"`
	Upstream      string       `yaml:"upstream"`
	TLS           *TLS         `yaml:"tls"`
	ProxyProtocol *ProxyAccept `yaml:"proxy_protocol"`
	WebSocket     *WebSocket   `yaml:"websocket"`
}

// WebSocket makes a listener speak MQTT over WebSocket (ws, or wss with tls).
type WebSocket struct {
	Path string `yaml:"path"` // default /mqtt
}

// TLS terminates TLS on a listener.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Certificates are more certificates for the listener, after cert and
	// key when those are set; crypto/tls picks one per client by its SNI
	// name and the algorithms it supports, and the first one otherwise.
	Certificates []CertKey `yaml:"certificates"`
	ClientCA     string    `yaml:"client_ca"`
	ClientAuth   string    `yaml:"client_auth"` // none | request | require
	MinVersion   string    `yaml:"min_version"` // "1.2" | "1.3"
	// Ciphers are the TLS 1.2 cipher suites offered, by their IANA names
	// (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 …); empty: Go's defaults.
	// TLS 1.3's suites are not configurable.
	Ciphers  []string  `yaml:"ciphers"`
	Identity *Identity `yaml:"identity"` // load balancer listeners only
}

// CertKey is a certificate (PEM, leaf first, then intermediates) and its key.
type CertKey struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// ProxyAccept accepts inbound PROXY protocol v1/v2 headers from trusted peers.
type ProxyAccept struct {
	Accept  bool     `yaml:"accept"`
	Trusted []string `yaml:"trusted"`
	Timeout Duration `yaml:"timeout"`
}

// Upstream is a group of broker servers and how to choose among them.
type Upstream struct {
	Balance        string        `yaml:"balance"`
	LoadFactor     float64       `yaml:"load_factor"`
	Sticky         Sticky        `yaml:"sticky"`
	ProxyProtocol  string        `yaml:"proxy_protocol"` // off | v1 | v2
	ConnectRetries int           `yaml:"connect_retries"`
	DialTimeout    Duration      `yaml:"dial_timeout"`
	ConnackTimeout Duration      `yaml:"connack_timeout"`
	HealthCheck    HealthCheck   `yaml:"health_check"`
	Servers        []Server      `yaml:"servers"`
	Auth           *UpstreamAuth `yaml:"auth"`

	// When the cluster changes (see rebalance.go).
	Rebalance       Rebalance `yaml:"rebalance"`
	SlowStart       Duration  `yaml:"slow_start"`
	MaxConnectRate  float64   `yaml:"max_connect_rate"`
	MaxConnectQueue int       `yaml:"max_connect_queue"`
}

// Sticky configures the sticky policy's table.
type Sticky struct {
	Key  string   `yaml:"key"` // client_id | username
	TTL  Duration `yaml:"ttl"`
	Size int      `yaml:"size"`
}

// HealthCheck configures active checks of an upstream's servers.
type HealthCheck struct {
	Type            string   `yaml:"type"` // mqtt | tcp | none
	Interval        Duration `yaml:"interval"`
	Timeout         Duration `yaml:"timeout"`
	Rise            int      `yaml:"rise"`
	Fall            int      `yaml:"fall"`
	ClientID        string   `yaml:"client_id"`
	Username        string   `yaml:"username"`
	Password        string   `yaml:"password"`
	ProtocolVersion int      `yaml:"protocol_version"` // 3, 4 or 5
}

// Server is one broker address in an upstream.
type Server struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	Weight  int    `yaml:"weight"`
	State   string `yaml:"state"` // enabled | drain | disabled: the state at first start
}

// Limits bound what clients may cost.
type Limits struct {
	ConnectTimeout   Duration `yaml:"connect_timeout"`
	MaxConnectPacket int      `yaml:"max_connect_packet"`
	MaxConnections   int      `yaml:"max_connections"`
	MaxPerIP         int      `yaml:"max_connections_per_ip"` // counted from accept, by socket peer (PROXY: the header's client)
	MaxPending       int      `yaml:"max_pending"`            // connections in their handshake (accept to whole CONNECT)
	ConnectRatePerIP float64  `yaml:"connect_rate_per_ip"`
	ConnectBurst     int      `yaml:"connect_burst_per_ip"`
	ShutdownGrace    Duration `yaml:"shutdown_grace"`
}

// DefaultMaxPending is limits.max_pending when unset: far above what a
// healthy load balancer has in flight (connect rate × handshake time), low
// enough that slow or stalled handshakes cannot take every descriptor.
const DefaultMaxPending = 10000

// AccessLog configures the per-connection log.
type AccessLog struct {
	Path   string `yaml:"path"`   // stdout | stderr | off | a file
	Format string `yaml:"format"` // text | json
}

// Admin configures the admin HTTP API.
type Admin struct {
	Address      string   `yaml:"address"` // "" disables the admin API
	Token        string   `yaml:"token"`
	TokenFile    string   `yaml:"token_file"`    // read the token from this file (a mounted secret) instead
	AllowedHosts []string `yaml:"allowed_hosts"` // Host header names answered besides IP literals and localhost
	Insecure     bool     `yaml:"insecure"`      // serve beyond loopback without a token

	tokenRead bool // Token was read from TokenFile (Validate may run again)
}

// Log configures the process log.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Process configures the load balancer's process (mqlb run).
type Process struct {
	// Scheduling is the Linux scheduling policy of every thread: batch
	// (default; SCHED_BATCH: a thread that wakes does not preempt the one
	// running, so the load balancer does not push a broker on the same
	// cores off its CPU) or normal (SCHED_OTHER).
	Scheduling string `yaml:"scheduling"`
}

// SlogLevel returns Level for log/slog (info when it is not one of the four,
// which validation refuses).
func (l Log) SlogLevel() slog.Level {
	var lv slog.Level
	if lv.UnmarshalText([]byte(l.Level)) != nil {
		return slog.LevelInfo
	}
	return lv
}

// Load reads, decodes, fills defaults and validates a load balancer config.
func Load(file string) (*Config, error) { return load[Config](file) }

// Parse decodes, fills defaults and validates a load balancer config.
func Parse(data []byte) (*Config, error) { return parse[Config](data) }

// SetDefaults fills every key the file left out.
func (c *Config) SetDefaults() {
	set := c.Lines.Set
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Name == "" {
			l.Name = fmt.Sprintf("listener%d", i)
		}
		if l.TLS != nil {
			l.TLS.ClientAuth = defaultString(l.TLS.ClientAuth, "none")
			l.TLS.MinVersion = defaultString(l.TLS.MinVersion, "1.2")
			l.TLS.setIdentityDefaults()
		}
		if l.WebSocket != nil {
			l.WebSocket.Path = defaultString(l.WebSocket.Path, "/mqtt")
		}
		if l.ProxyProtocol != nil && l.ProxyProtocol.Timeout == 0 {
			l.ProxyProtocol.Timeout = Duration(3e9)
		}
	}
	for name, u := range c.Upstreams {
		if u == nil {
			u = new(Upstream)
			c.Upstreams[name] = u
		}
		p := "upstreams." + name
		u.Balance = defaultString(u.Balance, "client_id")
		if !set(p + ".load_factor") {
			u.LoadFactor = 1.25
		}
		u.Sticky.Key = defaultString(u.Sticky.Key, "client_id")
		defaultDuration(&u.Sticky.TTL, 30*60e9)
		if u.Sticky.Size == 0 {
			u.Sticky.Size = 100_000
		}
		u.ProxyProtocol = defaultString(u.ProxyProtocol, "off")
		u.Auth.setDefaults()
		if !set(p + ".connect_retries") {
			u.ConnectRetries = 2
		}
		defaultDuration(&u.DialTimeout, 3e9)
		defaultDuration(&u.ConnackTimeout, 3e9)
		u.changeDefaults()
		h := &u.HealthCheck
		h.Type = defaultString(h.Type, "mqtt")
		defaultDuration(&h.Interval, 5e9)
		defaultDuration(&h.Timeout, 2e9)
		if h.Rise == 0 {
			h.Rise = 2
		}
		if h.Fall == 0 {
			h.Fall = 3
		}
		h.ClientID = defaultString(h.ClientID, "mqlb-health-{server}")
		if h.ProtocolVersion == 0 {
			h.ProtocolVersion = 4
		}
		for i := range u.Servers {
			s := &u.Servers[i]
			s.Name = defaultString(s.Name, s.Address)
			if s.Weight == 0 && !set(fmt.Sprintf("%s.servers[%d].weight", p, i)) {
				s.Weight = 1
			}
			s.State = defaultString(s.State, "enabled")
		}
	}
	l := &c.Limits
	defaultDuration(&l.ConnectTimeout, 10e9)
	if l.MaxConnectPacket == 0 {
		l.MaxConnectPacket = 262144
	}
	if l.ConnectBurst == 0 {
		l.ConnectBurst = max(1, int(l.ConnectRatePerIP))
	}
	if !set("limits.max_pending") {
		l.MaxPending = DefaultMaxPending
	}
	defaultDuration(&l.ShutdownGrace, 30e9)
	c.AccessLog.Path = defaultString(c.AccessLog.Path, "stdout")
	c.AccessLog.Format = defaultString(c.AccessLog.Format, "text")
	if !set("admin.address") {
		c.Admin.Address = "127.0.0.1:9090"
	}
	c.Log.Level = defaultString(c.Log.Level, "info")
	c.Log.Format = defaultString(c.Log.Format, "text")
	c.Process.Scheduling = defaultString(c.Process.Scheduling, "batch")
}

func defaultString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func defaultDuration(d *Duration, def float64) {
	if *d == 0 {
		*d = Duration(def)
	}
}

// Validate checks the whole config and returns every problem found, joined.
func (c *Config) Validate() error {
	ck := &check{lines: c.Lines}
	if len(c.Listeners) == 0 {
		ck.errorf("listeners", "at least one listener is required")
	}
	if len(c.Upstreams) == 0 {
		ck.errorf("upstreams", "at least one upstream is required")
	}
	seen := newListenerSeen()
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		ck.listener(p, l.Name, l.Address, seen)
		if l.Upstream == "" {
			ck.errorf(p+".upstream", "an upstream is required")
		} else if _, ok := c.Upstreams[l.Upstream]; !ok {
			ck.errorf(p+".upstream", "upstream %q is not defined; have: %s", l.Upstream, strings.Join(sortedKeys(c.Upstreams), ", "))
		}
		if l.TLS != nil {
			ck.tls(p+".tls", l.TLS)
			ck.identity(p+".tls.identity", l.TLS)
		}
		if l.WebSocket != nil && !strings.HasPrefix(l.WebSocket.Path, "/") {
			ck.errorf(p+".websocket.path", "want a path starting with /, got %q", l.WebSocket.Path)
		}
		ck.proxyAccept(p+".proxy_protocol", l.ProxyProtocol)
	}
	for _, name := range sortedKeys(c.Upstreams) {
		ck.upstream("upstreams."+name, c.Upstreams[name])
	}
	ck.limits(&c.Limits)
	ck.oneOf("access_log.format", c.AccessLog.Format, "text", "json")
	ck.admin(&c.Admin)
	ck.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	ck.oneOf("log.format", c.Log.Format, "text", "json")
	ck.oneOf("process.scheduling", c.Process.Scheduling, "batch", "normal")
	return errors.Join(ck.errs...)
}

func (ck *check) upstream(p string, u *Upstream) {
	if names := balance.Names(); !slices.Contains(names, u.Balance) { // the registry: a new policy needs no list here
		ck.errorf(p+".balance", "unknown policy %q; want one of %s", u.Balance, strings.Join(names, ", "))
	}
	if u.LoadFactor != 0 && u.LoadFactor < 1 {
		ck.errorf(p+".load_factor", "want 0 (no bound) or a factor of 1 or more such as 1.25, got %v", u.LoadFactor)
	}
	ck.oneOf(p+".sticky.key", u.Sticky.Key, "client_id", "username")
	if u.Sticky.Size < 0 {
		ck.errorf(p+".sticky.size", "must be more than zero")
	}
	ck.oneOf(p+".proxy_protocol", u.ProxyProtocol, "off", "v1", "v2")
	if u.ConnectRetries < 0 {
		ck.errorf(p+".connect_retries", "must be zero or more")
	}
	ck.positive(p+".dial_timeout", u.DialTimeout)
	ck.positive(p+".connack_timeout", u.ConnackTimeout)
	ck.upstreamAuth(p+".auth", u.Auth)
	ck.changes(p, u)
	h := u.HealthCheck
	ck.oneOf(p+".health_check.type", h.Type, "mqtt", "tcp", "none")
	ck.positive(p+".health_check.interval", h.Interval)
	ck.positive(p+".health_check.timeout", h.Timeout)
	if h.Rise < 1 {
		ck.errorf(p+".health_check.rise", "must be 1 or more")
	}
	if h.Fall < 1 {
		ck.errorf(p+".health_check.fall", "must be 1 or more")
	}
	if h.ProtocolVersion < 3 || h.ProtocolVersion > 5 {
		ck.errorf(p+".health_check.protocol_version", "want 3 (MQTT 3.1), 4 (3.1.1) or 5, got %d", h.ProtocolVersion)
	}
	if len(u.Servers) == 0 {
		ck.errorf(p+".servers", "at least one server is required")
	}
	seen := map[string]bool{}
	for i, s := range u.Servers {
		sp := fmt.Sprintf("%s.servers[%d]", p, i)
		ck.hostPort(sp+".address", s.Address, false)
		if !ValidServerName(s.Name) {
			ck.errorf(sp+".name", serverNameRule, maxServerName, s.Name)
		}
		if seen[s.Name] {
			ck.errorf(sp+".name", "duplicate server name %q", s.Name)
		}
		seen[s.Name] = true
		if s.Weight < 1 || s.Weight > 256 {
			ck.errorf(sp+".weight", "want a weight from 1 to 256, got %d", s.Weight)
		}
		ck.oneOf(sp+".state", s.State, "enabled", "drain", "disabled")
	}
}

// maxServerName bounds a server's name.
const maxServerName = 128

const serverNameRule = "want a name of letters, digits, '.', '_', '-' (and ':', '[', ']', as a name taken from the address has), at most %d bytes, not \".\" or \"..\"; got %q"

// ServerError says what is wrong with a server's name and dial address
// (the config file's rules) for a server added at run time, with "name"
// and "address" as the paths; nil if nothing.
func ServerError(name, address string) error {
	ck := &check{}
	ck.hostPort("address", address, false)
	if !ValidServerName(name) {
		ck.errorf("name", serverNameRule, maxServerName, name)
	}
	return errors.Join(ck.errs...)
}

// ValidServerName reports whether name may name a server: it appears in
// URL paths (/api/v1/upstreams/U/servers/NAME), in mqlb ctl's
// UPSTREAM/NAME, in metric labels and logs. A name defaults to the
// server's address, so ':' and the brackets of an IPv6 literal are allowed.
func ValidServerName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > maxServerName {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("._-:[]", r):
		default:
			return false
		}
	}
	return true
}

func (ck *check) limits(l *Limits) {
	ck.positive("limits.connect_timeout", l.ConnectTimeout)
	if l.MaxConnectPacket < 16 || l.MaxConnectPacket > 268_435_455 {
		ck.errorf("limits.max_connect_packet", "want a size from 16 to 268435455 bytes, got %d", l.MaxConnectPacket)
	}
	if l.MaxConnections < 0 {
		ck.errorf("limits.max_connections", "must be zero (no limit) or more")
	}
	if l.ConnectRatePerIP < 0 {
		ck.errorf("limits.connect_rate_per_ip", "must be zero (no limit) or more")
	}
	if l.MaxPerIP < 0 {
		ck.errorf("limits.max_connections_per_ip", "must be zero (no limit) or more")
	}
	if l.MaxPending < 0 {
		ck.errorf("limits.max_pending", "must be zero (no limit) or more")
	}
	if l.ConnectBurst < 1 {
		ck.errorf("limits.connect_burst_per_ip", "must be 1 or more")
	}
}

// UpstreamNames returns the upstream names in order.
func (c *Config) UpstreamNames() []string {
	return sortedKeys(c.Upstreams)
}
