package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as "5s", "250ms" or "1h30m".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// DecodeScalar implements ScalarDecoder.
func (d *Duration) DecodeScalar(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 5s or 250ms, got %q", s)
	}
	if v < 0 {
		return fmt.Errorf("want a duration of zero or more, got %q", s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// check collects validation errors against the lines of one document.
type check struct {
	lines Lines
	errs  []error
}

func (c *check) errorf(path, format string, args ...any) {
	c.errs = append(c.errs, c.lines.Errorf(path, format, args...))
}

// oneOf checks that v is one of want.
func (c *check) oneOf(path, v string, want ...string) {
	if !slices.Contains(want, v) {
		c.errorf(path, "unknown value %q; want one of %s", v, strings.Join(want, ", "))
	}
}

// hostPort checks a listen or dial address "host:port" (host may be empty
// for listening) and reports whether it is one.
func (c *check) hostPort(path, addr string, listen bool) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		c.errorf(path, "want host:port, got %q", addr)
		return false
	}
	ok := true
	if strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		c.errorf(path, "want host:port, got %q: the host has a space or control character", addr)
		ok = false
	}
	if !listen && host == "" {
		c.errorf(path, "want host:port with a host, got %q", addr)
		ok = false
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || (!listen && p == 0) {
		c.errorf(path, "bad port in %q", addr)
		ok = false
	}
	return ok
}

// listenerSeen collects listener names and addresses to find duplicates.
type listenerSeen struct{ names, addrs map[string]bool }

func newListenerSeen() *listenerSeen {
	return &listenerSeen{names: map[string]bool{}, addrs: map[string]bool{}}
}

// listener checks that a listener's address parses and that its name and
// address are unique among those seen (port 0 may repeat: each gets its own).
func (ck *check) listener(p, name, addr string, seen *listenerSeen) {
	if seen.names[name] {
		ck.errorf(p+".name", "duplicate listener name %q", name)
	}
	seen.names[name] = true
	ck.hostPort(p+".address", addr, true)
	if seen.addrs[addr] && !strings.HasSuffix(addr, ":0") {
		ck.errorf(p+".address", "address %q is used by another listener", addr)
	}
	seen.addrs[addr] = true
}

// positive checks d > 0.
func (c *check) positive(path string, d Duration) {
	if d <= 0 {
		c.errorf(path, "must be more than zero")
	}
}

// readable checks that a file can be read (certificates, keys, user files).
func (c *check) readable(path, file string) bool {
	if file == "" {
		c.errorf(path, "a file is required")
		return false
	}
	f, err := os.Open(file)
	if err != nil {
		c.errorf(path, "cannot read: %v", err)
		return false
	}
	f.Close()
	return true
}

// ParsePrefixes parses CIDRs or bare addresses (as /32 or /128).
func ParsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("want a CIDR such as 10.0.0.0/8 or an address, got %q", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// IsLoopback reports whether a listen address binds only to loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
