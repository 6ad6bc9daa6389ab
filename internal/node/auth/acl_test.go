package auth

import (
	"strings"
	"testing"
)

func TestCovers(t *testing.T) {
	cases := []struct {
		filter, req string
		want        bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true}, // [MQTT-4.7.1-2] # includes the parent level
		{"a/#", "a/b/c", true},
		{"a/#", "a/+/c", true},
		{"a/#", "a/#", true},
		{"a/b", "a/+", false},
		{"a/b/#", "a/#", false},
		{"#", "anything/at/all", true},
		{"#", "$SYS/broker", false}, // [MQTT-4.7.2-1]
		{"+/broker", "$SYS/broker", false},
		{"$SYS/#", "$SYS/broker/load", true},
		{"+", "", true}, // an empty level is a level
		{"a//c", "a//c", true},
	}
	for _, tc := range cases {
		got := covers(strings.Split(tc.filter, "/"), strings.Split(tc.req, "/"))
		if got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.filter, tc.req, got, tc.want)
		}
	}
}

// allowedRules exercise substitution, restrictions and first-match order.
var allowedRules = []Rule{
	{Allow: false, Access: AccessAll, Topic: "sensors/banned/#"},
	{Allow: true, Access: AccessAll, Topic: "sensors/%c/#"},
	{Allow: true, Access: AccessPublish, Topic: "users/%u/out"},
	{Allow: true, Access: AccessSubscribe, Topic: "cmd/%u/%c"},
	{Allow: true, Access: AccessSubscribe, Topic: "admin/#", Users: []string{"root"}},
	{Allow: true, Access: AccessSubscribe, Topic: "ops/#", Clients: []string{"dashboard"}},
	{Allow: true, Access: AccessSubscribe, Topic: "public/#"},
}

// allowedCases run against allowedRules.
var allowedCases = []struct {
	client, user, topic string
	write, want         bool
}{
	{"me", "u", "sensors/me/temp", true, true},
	{"me", "u", "sensors/other/temp", true, false},
	{"me", "u", "sensors/me/+", false, true},
	{"me", "u", "sensors/me/#", false, true},
	{"me", "u", "sensors/#", false, false},
	{"me", "u", "sensors/+/temp", false, false},
	{"banned", "u", "sensors/banned/x", true, false}, // first matching rule decides
	{"me", "u", "$share/g/sensors/me/+", false, true},
	{"me", "u", "$SHARE/g/sensors/me/x", false, true},
	{"me", "u", "$share/g/sensors/#", false, false},
	{"me", "alice", "users/alice/out", true, true},
	{"me", "alice", "users/alice/out", false, false}, // publish-only rule
	{"me", "alice", "users/bob/out", true, false},
	{"c1", "bob", "cmd/bob/c1", false, true},
	// Escape attempts: wildcards, separators, $-prefixes and placeholders
	// in the substituted values never widen a rule.
	{"+", "u", "sensors/+/temp", false, false},
	{"#", "u", "sensors/#", false, false},
	{"a/b", "u", "sensors/a/b", true, false},
	{"me", "#", "users/#", false, false},
	{"me", "+", "users/+/out", true, false},
	{"me", "", "users//out", true, false},
	{"$SYS", "u", "sensors/$SYS/x", true, false},
	{"%u", "bob", "cmd/bob/bob", false, false},
	{"%u", "bob", "cmd/bob/%u", false, true},
	{"x", "root", "admin/logs", false, true},
	{"x", "alice", "admin/logs", false, false},
	{"dashboard", "alice", "ops/cpu", false, true},
	{"laptop", "alice", "ops/cpu", false, false},
	{"x", "u", "public/news", false, true},
	{"x", "u", "public/news", true, false}, // ACLDefault false
	{"x", "u", "#", false, false},
}

func TestAllowed(t *testing.T) {
	st, err := buildState(Options{ACL: allowedRules})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range allowedCases {
		if got := st.allowed(nil, tc.client, tc.user, tc.topic, tc.write); got != tc.want {
			t.Errorf("client %q user %q topic %q write %v: allowed %v, want %v",
				tc.client, tc.user, tc.topic, tc.write, got, tc.want)
		}
	}
}

func TestACLDefault(t *testing.T) {
	for _, def := range []bool{true, false} {
		st, err := buildState(Options{ACLDefault: def})
		if err != nil {
			t.Fatal(err)
		}
		if got := st.allowed(nil, "c", "u", "any/topic", true); got != def {
			t.Errorf("no rules, ACLDefault %v: allowed %v", def, got)
		}
	}
}

func TestRuleErrors(t *testing.T) {
	cases := []struct {
		rule Rule
		want string
	}{
		{Rule{Access: "read", Topic: "a"}, `access "read"`},
		{Rule{Access: AccessAll, Topic: ""}, "empty topic filter"},
		{Rule{Access: AccessAll, Topic: "a/#/b"}, "'#' must be a whole level"},
		{Rule{Access: AccessAll, Topic: "a/b#"}, "'#' must be a whole level"},
		{Rule{Access: AccessAll, Topic: "a/+b"}, "'+' must be a whole level"},
		{Rule{Access: AccessAll, Topic: "$share/g/a"}, "$share"},
	}
	for _, tc := range cases {
		_, err := New(Options{ACL: []Rule{{Allow: true, Access: AccessAll, Topic: "ok"}, tc.rule}})
		if err == nil || !strings.Contains(err.Error(), "acl rule 1") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("rule %+v: error %v, want one naming rule 1 and %q", tc.rule, err, tc.want)
		}
	}
}
