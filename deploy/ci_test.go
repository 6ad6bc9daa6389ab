package deploy_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestCIInstallsWhatTheReadmeSays: the README's apt-get line, labelled
// "what .ci/run installs", names the packages .ci/run checks for and
// installs, no more and no fewer. gcc (go test -race needs cgo) was in the
// README only, so CI on a machine without it failed in make test.
func TestCIInstallsWhatTheReadmeSays(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^apt-get install -y ((?:[^\n#]|\\\n)*)# what \.ci/run installs$`).FindSubmatch(readme)
	if line == nil {
		t.Fatal(`README.md: no "apt-get install -y … # what .ci/run installs" line`)
	}
	var documented []string
	for _, f := range strings.Fields(string(line[1])) {
		if f != `\` {
			documented = append(documented, f)
		}
	}
	run, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	var installed []string
	for _, m := range regexp.MustCompile(`need\+=\(([^)]+)\)`).FindAllSubmatch(run, -1) {
		installed = append(installed, string(m[1]))
	}
	slices.Sort(documented)
	slices.Sort(installed)
	documented, installed = slices.Compact(documented), slices.Compact(installed)
	if !slices.Equal(documented, installed) {
		t.Errorf("README.md's apt-get line: %v\n.ci/run installs: %v", documented, installed)
	}
	for _, need := range []string{"gcc", "openssl"} { // make test -race; internal/upstream's cipher names
		if !slices.Contains(installed, need) {
			t.Errorf(".ci/run does not install %s", need)
		}
	}
}
