package config

import (
	"net"
	"os"
	"strings"
)

// admin checks an admin section (load balancer and node alike): an address
// beyond loopback needs a token, or insecure: true said out loud.
func (ck *check) admin(a *Admin) {
	ck.tokenFile(a)
	if a.Address == "" {
		return
	}
	ck.hostPort("admin.address", a.Address, true)
	if a.Token == "" && !a.Insecure && !loopbackAddress(a.Address) {
		ck.errorf("admin.address", "%s is reachable beyond loopback and admin.token is empty: set a token, or admin.insecure: true to accept that anyone who reaches it can drain servers", a.Address)
	}
	for i, h := range a.AllowedHosts {
		if h == "" || strings.ContainsAny(h, ":/ ") {
			ck.errorf("admin.allowed_hosts", "entry %d: want a host name such as mqlb.example.net (no port or scheme), or *, got %q", i, h)
		}
	}
}

// tokenFile reads admin.token_file into Token, so the token can live in a
// secret apart from the config.
func (ck *check) tokenFile(a *Admin) {
	if a.TokenFile == "" || a.tokenRead {
		return
	}
	if a.Token != "" {
		ck.errorf("admin.token_file", "set admin.token or admin.token_file, not both")
		return
	}
	b, err := os.ReadFile(a.TokenFile)
	if err != nil {
		ck.errorf("admin.token_file", "%v", err)
		return
	}
	if a.Token = strings.TrimSpace(string(b)); a.Token == "" {
		ck.errorf("admin.token_file", "%s is empty", a.TokenFile)
	}
	a.tokenRead = true
}

// loopbackAddress reports whether host:port names only loopback addresses.
func loopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
