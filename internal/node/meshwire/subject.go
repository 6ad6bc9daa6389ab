package meshwire

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// NATS subjects of the mesh. Everything lives under "mqlb.<cluster>.":
//
//	mqlb.<c>.t.<levels>                  a publish to an MQTT topic not starting with '$'
//	mqlb.<c>.d.<levels>                  a publish to a '$' topic ($foo/..., never $SYS: that is per node)
//	mqlb.<c>.sync                        interest sync ping, answered by every node
//	mqlb.<c>.node.<name>.takeover        session takeover requests to one node
//
// Keeping '$' topics in their own subtree lets a filter that starts with a
// wildcard map to NATS subjects that cannot match them, which is the rule of
// [MQTT-4.7.2-1]: "#" and "+/..." do not match topics beginning with '$'.

// Subjects builds the mesh's subjects for one cluster (or, with a longer
// name such as "<cluster>.q", for a subject space of its own).
type Subjects struct {
	prefix string // "mqlb.<cluster>"
}

// NewSubjects returns the subjects under "mqlb.<cluster>".
func NewSubjects(cluster string) Subjects { return Subjects{prefix: "mqlb." + cluster} }

// Sync is the subject of interest sync pings.
func (s Subjects) Sync() string { return s.prefix + ".sync" }

// Takeover is the subject of session takeover requests to one node.
func (s Subjects) Takeover(node string) string { return s.prefix + ".node." + node + ".takeover" }

// All is the wildcard subject that matches every subject of s.
func (s Subjects) All() string { return s.prefix + ".>" }

// Topic returns the subject a publish to an MQTT topic name is sent on.
func (s Subjects) Topic(topic string) string {
	var b strings.Builder
	b.Grow(len(s.prefix) + 3 + len(topic) + 8)
	b.WriteString(s.prefix)
	if strings.HasPrefix(topic, "$") {
		b.WriteString(".d")
	} else {
		b.WriteString(".t")
	}
	for level := range strings.SplitSeq(topic, "/") {
		b.WriteByte('.')
		writeToken(&b, level)
	}
	return b.String()
}

// Filter returns the subjects that together receive every publish matching an
// MQTT topic filter (a $share/{group}/ prefix must be removed first). A
// trailing "#" also matches its parent level ("a/#" matches "a"
// [MQTT-4.7.1-2]), so such a filter needs two subjects: "a.>" and "a".
func (s Subjects) Filter(filter string) []string {
	levels := strings.Split(filter, "/")
	space := ".t"
	if strings.HasPrefix(levels[0], "$") {
		space = ".d" // a literal '$' first level; wildcards never match '$' topics
	}
	var b strings.Builder
	b.WriteString(s.prefix)
	b.WriteString(space)
	for i, level := range levels {
		if level == "#" {
			parent := b.String()
			b.WriteString(".>")
			if i == 0 {
				return []string{b.String()} // "#" alone: every non-'$' topic
			}
			return []string{b.String(), parent}
		}
		b.WriteByte('.')
		if level == "+" {
			b.WriteByte('*')
			continue
		}
		writeToken(&b, level)
	}
	return []string{b.String()}
}

// The session queue (package session) stores each publish under a subject
// closed by an end token, "~~", which no topic level can produce (an empty
// level is "~" alone, and '~' itself is escaped). Then a trailing "#" needs
// no second subject for its parent level: "a/#" is "a.>", which matches
// "a.~~" (the topic "a") as well as "a.b.~~". Every MQTT filter is one
// subject, which a reader of the stream can follow with one cursor.
const endToken = "~~"

// QueueTopic returns the queue subject a publish to an MQTT topic name is
// stored under: Topic's, closed by the end token.
func (s Subjects) QueueTopic(topic string) string { return s.Topic(topic) + "." + endToken }

// QueueFilter returns the one queue subject that matches exactly the
// QueueTopic subjects of the topics an MQTT filter matches.
func (s Subjects) QueueFilter(filter string) string {
	f := s.Filter(filter)[0]
	if strings.HasSuffix(f, ".>") {
		return f
	}
	return f + "." + endToken
}

// Covering returns one subject that matches every subject of subjects (all
// from QueueFilter): their common leading tokens followed by ">". A reader
// of several filters reads what it matches and checks each message itself.
func Covering(subjects []string) string {
	if len(subjects) == 1 {
		return subjects[0]
	}
	common := strings.Split(subjects[0], ".")
	for _, s := range subjects[1:] {
		toks := strings.Split(s, ".")
		n := 0
		for n < len(common) && n < len(toks) && common[n] == toks[n] && toks[n] != ">" {
			n++
		}
		common = common[:n]
	}
	if n := len(common); n > 0 && common[n-1] == endToken {
		common = common[:n-1] // identical subjects
	}
	return strings.Join(append(common, ">"), ".")
}

// writeToken escapes one MQTT topic level into a valid NATS token. A NATS
// token cannot be empty nor hold '.', ' ' or control characters, and '*' or
// '>' would read as wildcards, so those bytes (and '~', the escape itself)
// become "~XX" in hex; an empty level becomes "~" alone, which no escaped
// level can produce.
func writeToken(b *strings.Builder, level string) {
	if level == "" {
		b.WriteByte('~')
		return
	}
	const hexdigits = "0123456789ABCDEF"
	for i := 0; i < len(level); i++ {
		c := level[i]
		if c == '.' || c == '*' || c == '>' || c == '~' || c <= ' ' || c == 0x7f {
			b.WriteByte('~')
			b.WriteByte(hexdigits[c>>4])
			b.WriteByte(hexdigits[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
}

// QueueName is the NATS queue group of one shared subscription (the whole
// "$share/{group}/{filter}" string: two groups with the same name but other
// filters are different subscriptions [MQTT-4.8.2]).
func QueueName(shared string) string {
	sum := sha256.Sum256([]byte(shared))
	return "s" + hex.EncodeToString(sum[:12])
}
