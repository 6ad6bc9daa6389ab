package node

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/mqlb/mqlb/internal/topic"
)

func TestTopicSubjects(t *testing.T) {
	s := newSubjects("c1")
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
		got := s.topic(tc.topic)
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
	s := newSubjects("c1")
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
		if got := s.filter(tc.filter); !slices.Equal(got, tc.want) {
			t.Errorf("filter %q → %q, want %q", tc.filter, got, tc.want)
		}
	}
}

// TestFiltersMatchLikeMQTT checks, with the NATS server's own matcher, that
// a filter's subjects match a topic's subject exactly when the MQTT filter
// matches the topic.
func TestFiltersMatchLikeMQTT(t *testing.T) {
	s := newSubjects("c")
	topics := []string{"a", "a/b", "a/b/c", "a//b", "/a", "a/", "$SYS/x", "$foo/a", "b/a", "a.b", "a/b.c", "*", "a/>"}
	filters := []string{"#", "+", "a/#", "a/+", "+/+", "a/+/c", "$SYS/#", "+/a", "$foo/+", "a/b", "a//+", "/+", "a.b", "*", "a/>", "+/#"}
	for _, f := range filters {
		for _, name := range topics {
			nats := slices.ContainsFunc(s.filter(f), func(sub string) bool {
				return server.SubjectMatchesFilter(s.topic(name), sub)
			})
			if want := topic.Match(f, name); nats != want {
				t.Errorf("filter %q, topic %q: NATS match %v, MQTT match %v", f, name, nats, want)
			}
		}
	}
}

func TestQueueName(t *testing.T) {
	if queueName("$share/g/a") == queueName("$share/g/b") || strings.ContainsAny(queueName("$share/g/a"), " .") {
		t.Error("queue names must differ per filter and be one token")
	}
}

func sampleEnvelope() *envelope {
	return &envelope{
		origin: "abcd", seq: 1 << 40, topic: "a/b/ü", qos: 2, retain: true, hasExp: true, expiry: 299,
		props: packets.Properties{
			PayloadFormat: 1, PayloadFormatFlag: true, ContentType: "text/plain", ResponseTopic: "r/t",
			CorrelationData: []byte{0, 1}, User: []packets.UserProperty{{Key: "k", Val: "v\r\n"}, {Key: "", Val: ""}},
		},
		handled: []string{"$share/g/a/#"},
		payload: []byte("payload\x00"),
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, e := range []*envelope{sampleEnvelope(), {topic: "t"}, {topic: "t", payload: []byte{}}} {
		got, err := decodeEnvelope(appendEnvelope(nil, e))
		if err != nil {
			t.Fatal(err)
		}
		if len(e.payload) == 0 {
			e.payload = got.payload // empty and nil payloads are the same message
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, e)
		}
	}
}

func FuzzEnvelope(f *testing.F) {
	f.Add(appendEnvelope(nil, sampleEnvelope()))
	f.Add([]byte{envelopeVersion, 0})
	f.Add([]byte{envelopeVersion, 3, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := decodeEnvelope(data)
		if err != nil {
			return
		}
		again, err := decodeEnvelope(appendEnvelope(nil, e))
		if err != nil || again.topic != e.topic || !bytes.Equal(again.payload, e.payload) || again.seq != e.seq {
			t.Fatalf("re-encoding a decoded envelope changed it: %v", err)
		}
	})
}

func TestReplayWindow(t *testing.T) {
	r := newReplayWindow()
	now := time.Now()
	fresh := func(origin string, seq uint64) bool { return r.fresh(origin, seq, now) }
	for _, tc := range []struct {
		origin string
		seq    uint64
		want   bool
	}{
		{"a", 1, true}, {"a", 1, false}, {"a", 3, true}, {"a", 2, true}, {"a", 2, false}, {"a", 3, false},
		{"b", 2, true}, {"a", 100, true}, {"a", 37, true}, {"a", 37, false},
		{"a", 100 + windowBits, true}, {"a", 100, false}, // slid out of the window: treated as old
		{"a", 101 + windowBits - 64, true}, {"a", 101 + windowBits - 64, false},
	} {
		if got := fresh(tc.origin, tc.seq); got != tc.want {
			t.Fatalf("fresh(%s, %d) = %v, want %v", tc.origin, tc.seq, got, tc.want)
		}
	}
	if !r.fresh("a", 5000+windowBits*3, now.Add(2*originIdle)) || len(r.origins) != 1 {
		t.Errorf("idle origins not swept: %d left", len(r.origins))
	}
}

func TestReplayWindowShiftsAcrossWords(t *testing.T) {
	w := new(window)
	for seq := uint64(1); seq <= 300; seq += 3 {
		if !w.record(seq) {
			t.Fatalf("first %d rejected", seq)
		}
	}
	for seq := uint64(1); seq <= 300; seq++ {
		if got := w.record(seq); got != (seq%3 != 1) {
			t.Fatalf("record(%d) again = %v", seq, got)
		}
	}
}
