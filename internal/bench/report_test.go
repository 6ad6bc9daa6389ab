package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeResult(t *testing.T, dir, name string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// row returns the cells of the table row whose metric starts with prefix.
func row(t *testing.T, table, prefix string) []string {
	t.Helper()
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "| "+prefix) {
			cells := strings.Split(strings.Trim(line, "| "), "|")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			return cells[1:]
		}
	}
	t.Fatalf("no row %q in\n%s", prefix, table)
	return nil
}

func TestReportMediansAndRatios(t *testing.T) {
	dir := t.TempDir()
	rates := map[string][]float64{"direct": {100, 300, 200}, "haproxy": {100, 100, 100}, "mqlb": {150, 50, 250}}
	p99 := map[string][]float64{"direct": {1, 1, 1}, "haproxy": {2, 3, 4}, "mqlb": {1.5, 9, 1.5}}
	for target, rs := range rates {
		for i, r := range rs {
			round := "r" + string(rune('1'+i))
			conn := &ConnResult{Connected: 10, ConnectRate: r}
			conn.Usage.MachineCPUPercent, conn.Usage.PhaseSeconds = 100, r/1e5 // r µs per connection
			if target != "direct" {
				conn.Usage.Watch = []WatchResult{{Watched: Watched{Name: "proxy"}, CPUSeconds: r / 1e6, SysSeconds: r / 2e6}}
			}
			writeResult(t, dir, round+"-"+target+"-conn.json", conn)
			ps := &PubSubResult{Counts: Counts{Received: 1000}, ReceivedRate: r * 10, Latency: Latency{Count: 1000, P99: p99[target][i]}}
			if target != "direct" {
				ps.Usage.Watch = []WatchResult{{Watched: Watched{Name: "proxy"}, CPUSeconds: r / 1000}}
			}
			writeResult(t, dir, round+"-"+target+"-q1.json", ps)
			idle := &ConnResult{Connected: 8000}
			who := map[bool]string{true: "broker", false: "proxy"}[target == "direct"]
			idle.Usage.Watch = []WatchResult{{Watched: Watched{Name: who}, RSSBefore: 1000, RSSAfter: 1000 + 8000*int64(r/10)}}
			writeResult(t, dir, round+"-"+target+"-idle.json", idle)
		}
	}
	writeResult(t, dir, "r1-mqlb-q0.json", &PubSubResult{Counts: Counts{Expected: 10, Received: 9, Lost: 1}, ReceivedRate: 90})
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o644)
	var out bytes.Buffer
	if err := Report(&out, dir, []string{"direct", "haproxy", "mqlb"}); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	check := func(prefix string, want ...string) {
		t.Helper()
		if got := row(t, table, prefix); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: got %q, want %q", prefix, got, want)
		}
	}
	check("connect rate", "200", "100", "150", "0.75", "1.50")
	check("connect ramp: proxy CPU per connection", "—", "10.0", "15.0", "—", "1.50")
	check("connect ramp: proxy CPU in the kernel", "—", "5.0", "7.5", "—", "1.50")
	check("connect ramp: the machine's CPU per connection", "200.0", "100.0", "150.0", "0.75", "1.50")
	check("QoS 1 max rate: received", "2,000", "1,000", "1,500", "0.75", "1.50")
	check("QoS 1 max rate: latency p99", "1.000", "3.000", "1.500", "1.50", "0.50")
	check("QoS 1 max rate: p99 added", "0.000", "2.000", "0.500", "—", "0.25")
	check("QoS 1 max rate: proxy CPU per message", "—", "100.0", "150.0", "—", "1.50")
	check("proxy RSS per idle connection", "—", "10.0", "15.0", "—", "1.50")
	check("QoS 0 max rate: received", "—", "—", "90", "—", "—")
	if !strings.Contains(table, "median of 3 rounds") || !strings.Contains(table, "r1-mqlb-q0.json: lost 1") {
		t.Errorf("header or notes missing:\n%s", table)
	}
}

// TestReportRoundsOfQoS1Only: targets that ran only the QoS 1 workload
// (bench/nodes.sh's durability rounds) are counted in the header; it said
// "median of 0 rounds".
func TestReportRoundsOfQoS1Only(t *testing.T) {
	dir := t.TempDir()
	for _, target := range []string{"memory", "replicated"} {
		for _, round := range []string{"r1", "r2"} {
			writeResult(t, dir, round+"-"+target+"-q1.json", &PubSubResult{Counts: Counts{Received: 10}, ReceivedRate: 10})
		}
	}
	var out bytes.Buffer
	if err := Report(&out, dir, []string{"memory", "replicated"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "median of 2 rounds") {
		t.Errorf("header: %s", strings.SplitN(out.String(), "\n", 2)[0])
	}
}

// TestReportWithoutResults: a directory with no result files, or none of
// the targets asked for, is an error naming what was looked for; it printed
// an empty table "median of 0 rounds" and succeeded.
func TestReportWithoutResults(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "mqlb-q1.json"), []byte("{}"), 0o644) // no round
	var out bytes.Buffer
	err := Report(&out, dir, []string{"direct", "haproxy", "mqlb"})
	if err == nil || !strings.Contains(err.Error(), "no result files named ROUND-TARGET-WORKLOAD.json") {
		t.Errorf("empty directory: err = %v, output:\n%s", err, out.String())
	}
	writeResult(t, dir, "r1-nginx-q1.json", &PubSubResult{Counts: Counts{Received: 10}})
	out.Reset()
	err = Report(&out, dir, []string{"direct", "mqlb"})
	if err == nil || !strings.Contains(err.Error(), "no results of targets direct, mqlb (the files have nginx): --targets names them") {
		t.Errorf("other targets: err = %v, output:\n%s", err, out.String())
	}
	if out.Len() != 0 {
		t.Errorf("a table printed:\n%s", out.String())
	}
}
