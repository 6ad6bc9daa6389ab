package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// metrics are the rows of the comparison table. The proxy under test is the
// watched process named "proxy", the broker the one named "broker".
var metrics = []metric{
	{name: "connect rate, conn/s", workload: "conn", unit: "int", conn: func(r *ConnResult) (float64, bool) {
		return r.ConnectRate, r.Connected > 0
	}},
	{name: "connect latency p50, ms", workload: "conn", unit: "ms", conn: connLatency(p50)},
	{name: "connect latency p99, ms", workload: "conn", unit: "ms", conn: connLatency(p99)},
	{name: "connect ramp: other processes' CPU, % of a core", workload: "conn", unit: "x.y", conn: func(r *ConnResult) (float64, bool) {
		return r.OtherCPUPercent, r.MachineCPUPercent > 0
	}},
	connCPU("proxy"),
	connSysCPU("proxy"),
	connCPU("broker"),
	connCPU("bench"),
	{name: "connect ramp: the machine's CPU per connection (all processes), µs", workload: "conn", unit: "x.y", conn: func(r *ConnResult) (float64, bool) {
		return r.MachineCPUPercent / 100 * r.PhaseSeconds * 1e6 / float64(r.Connected), r.MachineCPUPercent > 0 && r.Connected > 0
	}},
	rate("q0", "QoS 0 max rate:"),
	latency("q0", "QoS 0 max rate:", "p50 (queueing at saturation)", p50, false),
	latency("q0", "QoS 0 max rate:", "p99 (queueing at saturation)", p99, false),
	proxyCPU("q0", "QoS 0 max rate:"),
	rate("q1", "QoS 1 max rate:"),
	latency("q1", "QoS 1 max rate:", "p50", p50, false),
	latency("q1", "QoS 1 max rate:", "p99", p99, false),
	latency("q1", "QoS 1 max rate:", "p99", p99, true),
	proxyCPU("q1", "QoS 1 max rate:"),
	rate("lat", "QoS 1 fixed rate:"),
	latency("lat", "QoS 1 fixed rate:", "p50", p50, false),
	latency("lat", "QoS 1 fixed rate:", "p99", p99, false),
	latency("lat", "QoS 1 fixed rate:", "p99", p99, true),
	proxyCPU("lat", "QoS 1 fixed rate:"),
	{name: "proxy RSS per idle connection, KiB", workload: "idle", unit: "x.y", conn: func(r *ConnResult) (float64, bool) {
		p, ok := r.Find("proxy")
		return float64(p.RSSAfter-p.RSSBefore) / float64(r.Connected), ok && r.Connected > 0
	}},
	{name: "proxy RSS with the idle connections held, MiB", workload: "idle", unit: "x.y", conn: func(r *ConnResult) (float64, bool) {
		p, ok := r.Find("proxy")
		return float64(p.RSSAfter) / 1024, ok
	}},
	cpuPercent("q0", "QoS 0 max rate:", "broker"),
	cpuPercent("q0", "QoS 0 max rate:", "proxy"),
	cpuPercent("q0", "QoS 0 max rate:", "bench"),
	cpuPercent("q1", "QoS 1 max rate:", "broker"),
	cpuPercent("q1", "QoS 1 max rate:", "proxy"),
	cpuPercent("q1", "QoS 1 max rate:", "bench"),
	cpuPercent("q0", "QoS 0 max rate:", "other processes'"),
	cpuPercent("q1", "QoS 1 max rate:", "other processes'"),
}

func p50(l Latency) float64 { return l.P50 }
func p99(l Latency) float64 { return l.P99 }

func connLatency(f func(Latency) float64) func(*ConnResult) (float64, bool) {
	return func(r *ConnResult) (float64, bool) { return f(r.Latency), r.Latency.Count > 0 }
}

func rate(wl, name string) metric {
	return metric{name: name + " received, msg/s", workload: wl, unit: "int",
		pubsub: func(r *PubSubResult) (float64, bool) { return r.ReceivedRate, r.Received > 0 }}
}

func latency(wl, name, q string, f func(Latency) float64, added bool) metric {
	m := metric{name: name + " latency " + q + ", ms", workload: wl, unit: "ms", added: added,
		pubsub: func(r *PubSubResult) (float64, bool) { return f(r.Latency), r.Latency.Count > 0 }}
	if added {
		m.name = name + " " + q + " added to the first column's, ms"
	}
	return m
}

// proxyCPU is the proxy's CPU time per delivered message (each message
// crosses it twice: publisher → broker and broker → subscriber).
func proxyCPU(wl, name string) metric {
	return metric{name: name + " proxy CPU per message, µs", workload: wl, unit: "x.y",
		pubsub: func(r *PubSubResult) (float64, bool) {
			p, ok := r.Find("proxy")
			return p.CPUSeconds * 1e6 / float64(r.Received), ok && r.Received > 0
		}}
}

// connCPU is a process's CPU time per connection of the ramp (connect, the
// CONNACK, the close): on a machine the ramp saturates, the connect rate is
// about the cores ÷ the sum of these.
func connCPU(who string) metric {
	return metric{name: "connect ramp: " + who + " CPU per connection, µs", workload: "conn", unit: "x.y",
		conn: func(r *ConnResult) (float64, bool) {
			if r.Connected == 0 {
				return 0, false
			}
			if who == "bench" {
				return r.BenchCPU * 1e6 / float64(r.Connected), r.BenchCPU > 0
			}
			p, ok := r.Find(who)
			return p.CPUSeconds * 1e6 / float64(r.Connected), ok
		}}
}

// connSysCPU is the part of connCPU spent in the kernel: on loopback the
// receiving side's TCP runs in the sender's system calls, so this is where
// a proxy's connect, close and writes show, whoever makes them.
func connSysCPU(who string) metric {
	return metric{name: "connect ramp: " + who + " CPU in the kernel per connection, µs", workload: "conn", unit: "x.y",
		conn: func(r *ConnResult) (float64, bool) {
			p, ok := r.Find(who)
			return p.SysSeconds * 1e6 / float64(r.Connected), ok && r.Connected > 0
		}}
}

func cpuPercent(wl, name, who string) metric {
	return metric{name: name + " " + who + " CPU, % of a core", workload: wl, unit: "x.y",
		pubsub: func(r *PubSubResult) (float64, bool) {
			switch who {
			case "bench":
				return r.BenchCPUPercent, true
			case "other processes'":
				return r.OtherCPUPercent, r.MachineCPUPercent > 0
			}
			p, ok := r.Find(who)
			return p.CPUPercent, ok
		}}
}

// printNotes lists every run that saw failures, so that a table of medians
// never hides them.
func printNotes(w io.Writer, rs *results) {
	var notes []string
	for _, list := range rs.conn {
		for _, r := range list {
			if r.Failed > 0 || r.Dropped > 0 || r.Interrupted {
				notes = append(notes, fmt.Sprintf("%s: %d of %d connections failed (%s), %d dropped while held",
					rs.files[r], r.Failed, r.Attempted, failureText(r.Failures), r.Dropped))
			}
		}
	}
	for _, list := range rs.pubsub {
		for _, r := range list {
			if r.Lost > 0 || r.Duplicated > 0 || r.OutOfOrder > 0 || r.PublishErrors > 0 || r.ConnectionsLost > 0 || r.Interrupted {
				notes = append(notes, fmt.Sprintf("%s: lost %d, duplicated %d, out of order %d of %d expected; publish errors %d, connections lost %d (%s)",
					rs.files[r], r.Lost, r.Duplicated, r.OutOfOrder, r.Expected, r.PublishErrors, r.ConnectionsLost, failureText(r.Errors)))
			}
		}
	}
	slices.Sort(notes)
	if len(notes) == 0 {
		fmt.Fprintln(w, "\nNo run saw a failed connection, a lost, duplicated or reordered message, or an error.")
		return
	}
	fmt.Fprintln(w, "\nRuns with failures:")
	for _, n := range notes {
		fmt.Fprintln(w, "- "+n)
	}
}

func failureText(m map[string]int64) string {
	var parts []string
	for _, k := range sortedReasons(m) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "no reasons recorded"
	}
	return strings.Join(parts, ", ")
}
