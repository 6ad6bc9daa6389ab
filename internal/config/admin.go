package config

import (
	"os"
	"strings"
)

// admin checks an admin section (load balancer and node alike): an address
// beyond loopback needs a token, or insecure: true said out loud.
func (ck *check) admin(a *Admin) {
	// The API trims the bearer credentials it is sent: a token that is
	// blank, or has spaces around it, could never be matched.
	if a.Token != "" && !a.tokenRead {
		if strings.TrimSpace(a.Token) == "" {
			ck.errorf("admin.token", "is blank (only spaces): no request could ever match it; set a real token, or remove the key for none")
		} else if strings.TrimSpace(a.Token) != a.Token {
			ck.errorf("admin.token", "has spaces around it: no request could ever match it; remove them")
		}
	}
	ck.tokenFile(a)
	if a.Address == "" {
		return
	}
	// Only an address that parses is judged for loopback: "127.0.0.1"
	// alone is one error, not two; nor is a token_file that could not be
	// read (its own error says so) a missing token.
	if ck.hostPort("admin.address", a.Address, true) && a.Token == "" && a.TokenFile == "" && !a.Insecure && !IsLoopback(a.Address) {
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
	ck.secretFile("admin.token", a.TokenFile, &a.Token, &a.tokenRead)
}

// secretFile reads KEY_file into *value (once: Validate may run again), so
// a secret can live apart from the config (a mounted Kubernetes Secret, a
// systemd credential). Setting both the key and its file is an error.
func (ck *check) secretFile(key, file string, value *string, read *bool) {
	if file == "" || *read {
		return
	}
	if *value != "" {
		ck.errorf(key+"_file", "set %s or %s_file, not both", key, key)
		return
	}
	b, err := os.ReadFile(file)
	if err != nil {
		ck.errorf(key+"_file", "%v", err)
		return
	}
	if *value = strings.TrimSpace(string(b)); *value == "" {
		ck.errorf(key+"_file", "%s is empty", file)
	}
	*read = true
}
