package session

import (
	"encoding/json"
	"testing"
)

// A record read back from the registry is the record written (rewriting
// stops on a conflict unless the record there is its own write, committed
// after a try timed out); any changed field makes it another.
func TestSameRecordAfterRoundTrip(t *testing.T) {
	written := Record{Client: "c", Node: "n1", Instance: "i", Expiry: 60, Version: 5, Since: 10,
		Subs: []subRecord{}}
	read := func(r Record) *Record {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var out Record
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return &out
	}
	if !sameRecord(&written, read(written)) {
		t.Error("a record without subscriptions differs from itself read back")
	}
	written.Subs = []subRecord{{Filter: "a/#", QoS: 1}, {Filter: "b", QoS: 2, NL: true}}
	if !sameRecord(&written, read(written)) {
		t.Error("a record differs from itself read back")
	}
	for name, change := range map[string]func(*Record){
		"gone":     func(r *Record) { r.Gone = 11 },
		"node":     func(r *Record) { r.Node = "n2" },
		"subs":     func(r *Record) { r.Subs = r.Subs[:1] },
		"sub qos":  func(r *Record) { r.Subs = []subRecord{{Filter: "a/#", QoS: 2}, r.Subs[1]} },
		"instance": func(r *Record) { r.Instance = "j" },
	} {
		other := *read(written)
		change(&other)
		if sameRecord(&written, &other) {
			t.Errorf("%s changed: still the same record", name)
		}
	}
}
