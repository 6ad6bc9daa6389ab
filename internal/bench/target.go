package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// Target is where a bench connects and how.
type Target struct {
	URL      string `json:"url"` // as given, password removed
	Addr     string `json:"-"`   // host:port
	Version  byte   `json:"protocol_version"`
	Username string `json:"username,omitempty"`
	Password string `json:"-"`
	TLS      bool   `json:"tls"`
	CAFile   string `json:"ca,omitempty"`
	// SourceAddrs are local addresses to bind, used in turn, to spread
	// connections past one address's ephemeral ports.
	SourceAddrs []netip.Addr `json:"source_addrs,omitempty"`

	tlsConfig *tls.Config
}

// ParseTarget reads mqtt://[user[:pass]@]host:port (also tcp://; mqtts://,
// ssl:// and tls:// imply TLS). The port defaults to 1883, or 8883 with TLS.
// v5 selects MQTT 5.0 instead of 3.1.1.
func ParseTarget(raw string, v5, useTLS bool, caFile string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return Target{}, fmt.Errorf("url %q: want mqtt://host:port", raw)
	}
	t := Target{Version: mqttwire.V311, TLS: useTLS, CAFile: caFile}
	if v5 {
		t.Version = mqttwire.V5
	}
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp":
	case "mqtts", "ssl", "tls":
		t.TLS = true
	default:
		return Target{}, fmt.Errorf("url %q: scheme %q: want mqtt, tcp, mqtts, ssl or tls", raw, u.Scheme)
	}
	if u.User != nil {
		t.Username = u.User.Username()
		t.Password, _ = u.User.Password()
		u.User = url.User(t.Username)
	}
	port := u.Port()
	if port == "" {
		port = map[bool]string{false: "1883", true: "8883"}[t.TLS]
	}
	t.Addr = net.JoinHostPort(u.Hostname(), port)
	t.URL = u.String()
	if t.TLS {
		if t.tlsConfig, err = tlsConfig(u.Hostname(), caFile); err != nil {
			return Target{}, err
		}
	}
	return t, nil
}

func tlsConfig(host, caFile string) (*tls.Config, error) {
	c := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	c.RootCAs = x509.NewCertPool()
	if !c.RootCAs.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s: no PEM certificates in it", caFile)
	}
	return c, nil
}

// ParseSourceAddrs reads a comma-separated list of local IP addresses.
func ParseSourceAddrs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("--source-addrs: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// dialers returns one dialer per source address (one with no binding when
// there are none).
func (t *Target) dialers() []*net.Dialer {
	if len(t.SourceAddrs) == 0 {
		return []*net.Dialer{{}}
	}
	out := make([]*net.Dialer, len(t.SourceAddrs))
	for i, a := range t.SourceAddrs {
		out[i] = &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0)), Control: bindNoPort}
	}
	return out
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT: with a bound source address the
// kernel then picks the port at connect time, per destination, instead of
// reserving one port per socket across all destinations at bind time.
func bindNoPort(network, _ string, c syscall.RawConn) error {
	if network != "tcp4" {
		return nil
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// dial opens a connection (and TLS session) to the target with d before the
// deadline. The TLS handshake runs here.
func (t *Target) dial(ctx context.Context, d *net.Dialer, deadline time.Time) (net.Conn, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, &dialError{err}
	}
	if !t.TLS {
		return c, nil
	}
	tc := tls.Client(c, t.tlsConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, &tlsError{err}
	}
	return tc, nil
}

// dialError and tlsError mark the step that failed, for the failure reasons.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

type tlsError struct{ err error }

func (e *tlsError) Error() string { return "tls: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }
