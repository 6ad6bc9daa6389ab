package bench

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestCountsDocumented: every count of a pub/sub result (the summary's
// words, the JSON's names) is explained in docs/benchmarks.md's section on
// the load generator's CLI; unexpected and foreign were not.
func TestCountsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/benchmarks.md")
	if err != nil {
		t.Fatal(err)
	}
	const heading = "\n## The load generator's CLI\n"
	_, section, ok := strings.Cut(string(b), heading)
	if !ok {
		t.Fatalf("docs/benchmarks.md has no %q", strings.TrimSpace(heading))
	}
	section, _, _ = strings.Cut(section, "\n## ")
	ct := reflect.TypeFor[Counts]()
	for i := range ct.NumField() {
		name := ct.Field(i).Tag.Get("json")
		if !strings.Contains(section, "`"+name+"` — ") {
			t.Errorf("the load generator's CLI section does not explain `%s`", name)
		}
	}
}
