package meshwire

import (
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mqlb/mqlb/internal/topic"
)

func TestTopicSubjects(t *testing.T) {
	s := NewSubjects("c1")
	for _, tc := range []struct{ topic, subject string }{
		{"a/b", "mqlb.c1.t.a.b"},
		{"a.b/c d", "mqlb.c1.t.a~2Eb.c~20d"},
		{"a//b/", "mqlb.c1.t.a.~.b.~"},
		{"/", "mqlb.c1.t.~.~"},
		{"*/>/~", "mqlb.c1.t.~2A.~3E.~7E"},
		{"a*b", "mqlb.c1.t.a~2Ab"},
		{"$SYS/x", "mqlb.c1.d.$SYS.x"},
		{"$foo", "mqlb.c1.d.$foo"},
		{"tab\there", "mqlb.c1.t.tab~09here"},
		{"ü/ñ", "mqlb.c1.t.ü.ñ"},
	} {
		got := s.Topic(tc.topic)
		if got != tc.subject {
			t.Errorf("topic %q → %q, want %q", tc.topic, got, tc.subject)
		}
		if !isSubject(got) {
			t.Errorf("topic %q → %q is not a valid NATS subject", tc.topic, got)
		}
	}
}

func isSubject(s string) bool {
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") || tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}

func TestFilterSubjects(t *testing.T) {
	s := NewSubjects("c1")
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"a/b", []string{"mqlb.c1.t.a.b"}},
		{"a/+/c", []string{"mqlb.c1.t.a.*.c"}},
		{"a/#", []string{"mqlb.c1.t.a.>", "mqlb.c1.t.a"}}, // [MQTT-4.7.1-2]: also the parent level
		{"#", []string{"mqlb.c1.t.>"}},                    // not $ topics [MQTT-4.7.2-1]
		{"+/x", []string{"mqlb.c1.t.*.x"}},
		{"$foo/#", []string{"mqlb.c1.d.$foo.>", "mqlb.c1.d.$foo"}},
		{"a//+", []string{"mqlb.c1.t.a.~.*"}},
	} {
		if got := s.Filter(tc.filter); !slices.Equal(got, tc.want) {
			t.Errorf("filter %q → %q, want %q", tc.filter, got, tc.want)
		}
	}
}

// TestFiltersMatchLikeMQTT checks, with the NATS server's own matcher, that
// a filter's subjects match a topic's subject exactly when the MQTT filter
// matches the topic.
func TestFiltersMatchLikeMQTT(t *testing.T) {
	s := NewSubjects("c")
	topics := []string{"a", "a/b", "a/b/c", "a//b", "/a", "a/", "$SYS/x", "$foo/a", "b/a", "a.b", "a/b.c", "*", "a/>"}
	filters := []string{"#", "+", "a/#", "a/+", "+/+", "a/+/c", "$SYS/#", "+/a", "$foo/+", "a/b", "a//+", "/+", "a.b", "*", "a/>", "+/#"}
	for _, f := range filters {
		for _, name := range topics {
			nats := slices.ContainsFunc(s.Filter(f), func(sub string) bool {
				return server.SubjectMatchesFilter(s.Topic(name), sub)
			})
			if want := topic.Match(f, name); nats != want {
				t.Errorf("filter %q, topic %q: NATS match %v, MQTT match %v", f, name, nats, want)
			}
		}
	}
}

// TestQueueFiltersMatchLikeMQTT: the same for the session queue's subjects,
// where every filter is one subject, and for the subject covering several.
func TestQueueFiltersMatchLikeMQTT(t *testing.T) {
	s := NewSubjects("c.q")
	topics := []string{"a", "a/b", "a/b/c", "a//b", "/a", "a/", "$SYS/x", "$foo/a", "$foo", "b/a", "a.b", "a/b.c", "*", "a/>", "~~", "a/~~", ""}
	filters := []string{"#", "+", "a/#", "a/+", "+/+", "a/+/c", "$SYS/#", "+/a", "$foo/+", "$foo/#", "a/b", "a//+", "/+", "a.b", "*", "a/>", "+/#", "~~", "a/~~"}
	for _, f := range filters {
		for _, name := range topics {
			sub := s.QueueTopic(name)
			if !isSubject(sub) {
				t.Fatalf("topic %q → %q is not a valid NATS subject", name, sub)
			}
			if nats, want := server.SubjectMatchesFilter(sub, s.QueueFilter(f)), topic.Match(f, name); nats != want {
				t.Errorf("filter %q (%s), topic %q (%s): NATS match %v, MQTT match %v", f, s.QueueFilter(f), name, sub, nats, want)
			}
		}
	}
	for _, set := range [][]string{{"a/b", "a/c"}, {"a/#", "a/b/c"}, {"x/+/y", "x/+/z"}, {"a", "$foo/#"}, {"a/b", "a/b"}, {"+/x", "a/#"}} {
		var subs []string
		for _, f := range set {
			subs = append(subs, s.QueueFilter(f))
		}
		cover := Covering(subs)
		for _, name := range topics {
			for _, f := range set {
				if topic.Match(f, name) && !server.SubjectMatchesFilter(s.QueueTopic(name), cover) {
					t.Errorf("filters %q: covering %q misses topic %q", set, cover, name)
				}
			}
		}
	}
	if got := Covering([]string{s.QueueFilter("d/1/cmd"), s.QueueFilter("d/1/cfg/#")}); got != "mqlb.c.q.t.d.1.>" {
		t.Errorf("covering of d/1/cmd and d/1/cfg/#: %q", got)
	}
}

func TestQueueName(t *testing.T) {
	if QueueName("$share/g/a") == QueueName("$share/g/b") || strings.ContainsAny(QueueName("$share/g/a"), " .") {
		t.Error("queue names must differ per filter and be one token")
	}
}
