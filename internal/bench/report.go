package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Report result files are named ROUND-TARGET-WORKLOAD.json, for example
// r2-haproxy-q1.json. Workloads: conn (connection ramp), idle (connections
// held to measure memory), q0 and q1 (pub/sub at QoS 0 and 1, as fast as
// possible), lat (pub/sub at a fixed rate well below saturation).
var resultName = regexp.MustCompile(`^(r\d+)-([A-Za-z0-9_]+)-(conn|idle|q0|q1|lat)\.json$`)

// results holds the decoded results of a directory by workload and target.
type results struct {
	conn   map[string][]*ConnResult // workloads conn and idle: key "workload/target"
	pubsub map[string][]*PubSubResult
	files  map[any]string // result → file name, for notes
}

// loadResults reads every result file in dir.
func loadResults(dir string) (*results, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	rs := &results{conn: map[string][]*ConnResult{}, pubsub: map[string][]*PubSubResult{}, files: map[any]string{}}
	for _, e := range ents {
		m := resultName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		key := m[3] + "/" + m[2]
		if m[3] == "conn" || m[3] == "idle" {
			err = decodeInto(b, rs.conn, key, rs.files, e.Name())
		} else {
			err = decodeInto(b, rs.pubsub, key, rs.files, e.Name())
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
	}
	return rs, nil
}

func decodeInto[T any](b []byte, into map[string][]*T, key string, files map[any]string, name string) error {
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return err
	}
	into[key] = append(into[key], v)
	files[v] = name
	return nil
}

// metric is one row of the table: a value per run, the median of which is shown.
type metric struct {
	name     string
	workload string
	unit     string // format: "int", "ms", "x.y"
	conn     func(*ConnResult) (float64, bool)
	pubsub   func(*PubSubResult) (float64, bool)
	// added shows the difference to the first target's median instead.
	added bool
}

// Report prints the comparison table of the results in dir: the median over
// rounds of each metric for each target, and the ratios of the last target
// to each other one. Targets are in column order; the first is the baseline
// of the "added" rows.
func Report(w io.Writer, dir string, targets []string) error {
	rs, err := loadResults(dir)
	if err != nil {
		return err
	}
	if len(targets) < 1 {
		return fmt.Errorf("no targets")
	}
	if err := rs.covers(dir, targets); err != nil {
		return err
	}
	subject := targets[len(targets)-1]
	others := targets[:len(targets)-1]
	fmt.Fprintf(w, "| metric (median of %s) |", roundsText(rs, targets))
	for _, t := range targets {
		fmt.Fprintf(w, " %s |", t)
	}
	for _, o := range others {
		fmt.Fprintf(w, " %s ÷ %s |", subject, o)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(targets)+len(others)))
	for _, m := range metrics {
		printRow(w, rs, m, targets)
	}
	printNotes(w, rs)
	return nil
}

// covers checks that dir held result files, and some of targets'.
func (rs *results) covers(dir string, targets []string) error {
	have := map[string]bool{} // keys are "workload/target"
	for key := range rs.conn {
		have[key[strings.IndexByte(key, '/')+1:]] = true
	}
	for key := range rs.pubsub {
		have[key[strings.IndexByte(key, '/')+1:]] = true
	}
	found := slices.Sorted(maps.Keys(have))
	if len(found) == 0 {
		return fmt.Errorf("%s: no result files named ROUND-TARGET-WORKLOAD.json (such as r1-mqlb-q1.json; workloads conn, idle, q0, q1, lat)", dir)
	}
	for _, t := range targets {
		if slices.Contains(found, t) {
			return nil
		}
	}
	return fmt.Errorf("%s: no results of targets %s (the files have %s): --targets names them",
		dir, strings.Join(targets, ", "), strings.Join(found, ", "))
}

func printRow(w io.Writer, rs *results, m metric, targets []string) {
	vals := make([]float64, len(targets))
	oks := make([]bool, len(targets))
	for i, t := range targets {
		vals[i], oks[i] = rs.median(m, t)
	}
	if m.added {
		for i := len(targets) - 1; i >= 0; i-- {
			vals[i], oks[i] = vals[i]-vals[0], oks[i] && oks[0]
		}
	}
	fmt.Fprintf(w, "| %s |", m.name)
	for i := range targets {
		fmt.Fprintf(w, " %s |", formatValue(vals[i], oks[i], m.unit))
	}
	last := len(targets) - 1
	for i := range last {
		ok := oks[i] && oks[last] && vals[i] != 0 && !(m.added && i == 0)
		fmt.Fprintf(w, " %s |", formatValue(vals[last]/vals[i], ok, "ratio"))
	}
	fmt.Fprintln(w)
}

// median is the median over rounds of metric m for target t.
func (rs *results) median(m metric, t string) (float64, bool) {
	var vs []float64
	key := m.workload + "/" + t
	if m.conn != nil {
		for _, r := range rs.conn[key] {
			if v, ok := m.conn(r); ok {
				vs = append(vs, v)
			}
		}
	} else {
		for _, r := range rs.pubsub[key] {
			if v, ok := m.pubsub(r); ok {
				vs = append(vs, v)
			}
		}
	}
	return median(vs)
}

func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2], true
	}
	return (vs[n/2-1] + vs[n/2]) / 2, true
}

func formatValue(v float64, ok bool, unit string) string {
	if !ok {
		return "—"
	}
	switch unit {
	case "int":
		return commas(int64(v + 0.5))
	case "ms":
		return fmt.Sprintf("%.3f", v)
	case "ratio":
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func roundsText(rs *results, targets []string) string {
	n := 0
	for _, t := range targets {
		for key, runs := range rs.conn {
			if strings.HasSuffix(key, "/"+t) {
				n = max(n, len(runs))
			}
		}
		for key, runs := range rs.pubsub {
			if strings.HasSuffix(key, "/"+t) {
				n = max(n, len(runs)) // a target may have run one workload only (QoS 1)
			}
		}
	}
	if n == 1 {
		return "1 round"
	}
	return fmt.Sprintf("%d rounds", n)
}
