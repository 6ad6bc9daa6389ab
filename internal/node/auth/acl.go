package auth

import (
	"fmt"
	"slices"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqlb/mqlb/internal/topic"
)

// Rule is one ACL entry. Rules are evaluated in order; the first rule that
// applies to the client and whose filter matches the topic decides.
type Rule struct {
	Allow   bool     // true = allow, false = deny
	Access  string   // "publish" | "subscribe" | "all"
	Topic   string   // an MQTT topic filter; %c is replaced by the client id and %u by the username before matching
	Users   []string // optional: rule applies only to these usernames (empty = anyone)
	Clients []string // optional: only to these client ids
}

// Access values.
const (
	AccessPublish   = "publish"
	AccessSubscribe = "subscribe"
	AccessAll       = "all"
)

// rule is a validated Rule with its filter split into levels.
type rule struct {
	allow   bool
	pub     bool
	sub     bool
	levels  []string
	subst   bool // the filter holds %c or %u
	users   []string
	clients []string
}

func compileRules(rules []Rule) ([]rule, error) {
	out := make([]rule, 0, len(rules))
	for i, r := range rules {
		c, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("auth: acl rule %d (topic %q): %w", i, r.Topic, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func compileRule(r Rule) (rule, error) {
	c := rule{allow: r.Allow, users: r.Users, clients: r.Clients}
	switch r.Access {
	case AccessPublish:
		c.pub = true
	case AccessSubscribe:
		c.sub = true
	case AccessAll:
		c.pub, c.sub = true, true
	default:
		return rule{}, fmt.Errorf("access %q: want publish, subscribe or all", r.Access)
	}
	if err := topic.ValidFilter(r.Topic); err != nil {
		return rule{}, err
	}
	if mqtt.IsSharedFilter(r.Topic) {
		return rule{}, fmt.Errorf("a $share filter never matches: rules apply to the filter inside $share/group/")
	}
	c.levels = strings.Split(r.Topic, "/")
	c.subst = strings.Contains(r.Topic, "%c") || strings.Contains(r.Topic, "%u")
	return c, nil
}

// appliesTo reports whether the rule concerns this client and access.
func (r *rule) appliesTo(clientID, username string, write bool) bool {
	if write && !r.pub || !write && !r.sub {
		return false
	}
	if len(r.users) > 0 && !slices.Contains(r.users, username) {
		return false
	}
	return len(r.clients) == 0 || slices.Contains(r.clients, clientID)
}

// matches reports whether the rule's filter, after substitution, covers req.
func (r *rule) matches(req []string, clientID, username string) bool {
	filter := r.levels
	if r.subst {
		var ok bool
		if filter, ok = r.substitute(clientID, username); !ok {
			return false
		}
	}
	return covers(filter, req)
}

// substitute replaces %c and %u in one pass, so a client id holding "%u"
// cannot pull in the username. A value that is empty, holds '+', '#' or '/',
// or starts with '$' would widen the filter beyond the client's own literal
// level (or reach $-topics), so the rule does not match at all.
func (r *rule) substitute(clientID, username string) ([]string, bool) {
	rep := strings.NewReplacer("%c", clientID, "%u", username)
	out := make([]string, len(r.levels))
	for i, lv := range r.levels {
		if strings.Contains(lv, "%c") && !safeValue(clientID) ||
			strings.Contains(lv, "%u") && !safeValue(username) {
			return nil, false
		}
		out[i] = rep.Replace(lv)
	}
	return out, true
}

func safeValue(v string) bool {
	return v != "" && !strings.ContainsAny(v, "+#/") && !strings.HasPrefix(v, "$")
}

// covers reports whether every topic that req matches is also matched by
// filter. A topic name (no wildcards) is covered exactly when filter matches
// it, so the same test serves publish checks and subscribe checks.
func covers(filter, req []string) bool {
	// [MQTT-4.7.2-1] a filter starting with a wildcard does not match
	// topics starting with '$'.
	if strings.HasPrefix(req[0], "$") && (filter[0] == "+" || filter[0] == "#") {
		return false
	}
	for i, f := range filter {
		if f == "#" {
			return true // [MQTT-4.7.1-2] the parent level and any below
		}
		if i >= len(req) {
			return false
		}
		q := req[i]
		switch {
		case q == "#":
			return false // a multi-level request under a narrower level
		case f == "+":
			// [MQTT-4.7.1-3] one whole level: covers a literal or a '+'
		case f != q:
			return false
		}
	}
	return len(req) == len(filter)
}
