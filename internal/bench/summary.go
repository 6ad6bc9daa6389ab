package bench

import (
	"fmt"
	"io"
	"strconv"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// Print writes the human summary of a connection ramp.
func (r *ConnResult) Print(w io.Writer) {
	c := &r.Config
	fmt.Fprintf(w, "conn: %d connections to %s (%s) at %s, %d in flight at most%s\n", c.Clients, c.Target.URL,
		versionName(c.Target.Version), rateText(c.Rate, "conn/s"), c.Concurrency, interrupted(r.Interrupted))
	fmt.Fprintf(w, "  connected  %s of %s attempted in %.3fs: %s conn/s\n", commas(r.Connected),
		commas(r.Attempted), r.TimeToAll, commas(int64(r.ConnectRate)))
	fmt.Fprintf(w, "  failed     %s\n", commas(r.Failed))
	for _, k := range sortedReasons(r.Failures) {
		fmt.Fprintf(w, "    %-40s %s\n", k, commas(r.Failures[k]))
	}
	fmt.Fprintf(w, "  latency    %s  (dial to CONNACK)\n", latencyText(r.Latency))
	if c.Hold.Duration > 0 {
		fmt.Fprintf(w, "  held       %v, dropped by the server: %s\n", c.Hold, commas(r.Dropped))
	}
	r.Usage.print(w, r.Connected)
}

// Print writes the human summary of a pub/sub run.
func (r *PubSubResult) Print(w io.Writer) {
	c := &r.Config
	group := ""
	if c.Shared != "" {
		group = ", shared group " + c.Shared
	}
	fmt.Fprintf(w, "pubsub: %d publishers → %s, %d subscribers ← %s (%s), QoS %d, %d bytes, %s each, %v, %d topics%s%s\n",
		c.Publishers, c.PubTarget.URL, c.Subscribers, c.SubTarget.URL, versionName(c.PubTarget.Version), c.QoS, c.Size,
		rateText(c.Rate, "msg/s"), c.Duration, c.Topics, group, interrupted(r.Interrupted))
	fmt.Fprintf(w, "  published  %s in %.2fs: %s msg/s\n", commas(r.Published), r.PublishSeconds, commas(int64(r.SentRate)))
	fmt.Fprintf(w, "  received   %s of %s expected in %.2fs: %s msg/s\n", commas(r.Received), commas(r.Expected),
		r.ReceiveSeconds, commas(int64(r.ReceivedRate)))
	fmt.Fprintf(w, "  lost %s  duplicated %s  out of order %s  unexpected %s  foreign %s\n", commas(r.Lost),
		commas(r.Duplicated), commas(r.OutOfOrder), commas(r.Unexpected), commas(r.Foreign))
	fmt.Fprintf(w, "  errors     publish %s, connections lost %s\n", commas(r.PublishErrors), commas(r.ConnectionsLost))
	for _, k := range sortedReasons(r.Errors) {
		fmt.Fprintf(w, "    %-40s %s\n", k, commas(r.Errors[k]))
	}
	fmt.Fprintf(w, "  latency    %s  (publish to delivery)\n", latencyText(r.Latency))
	r.Usage.print(w, 0)
}

func (u *Usage) print(w io.Writer, conns int64) {
	fmt.Fprintf(w, "  cpu        bench %.2fs (%.0f%% of a core); machine %.0f%% of a core, other processes %.0f%%\n",
		u.BenchCPU, u.BenchCPUPercent, u.MachineCPUPercent, u.OtherCPUPercent)
	for _, x := range u.Watch {
		if x.Error != "" {
			fmt.Fprintf(w, "  %-10s pid %d: %s\n", x.Name, x.PID, x.Error)
			continue
		}
		fmt.Fprintf(w, "  %-10s pid %d: cpu %.2fs (%.0f%% of a core), RSS %s → %s KiB", x.Name, x.PID,
			x.CPUSeconds, x.CPUPercent, commas(x.RSSBefore), commas(x.RSSAfter))
		if conns > 0 {
			fmt.Fprintf(w, " (%.1f KiB per connection)", float64(x.RSSAfter-x.RSSBefore)/float64(conns))
		}
		fmt.Fprintln(w)
	}
}

func latencyText(l Latency) string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (%s samples)", msText(l.P50), msText(l.P90),
		msText(l.P99), msText(l.Max), commas(int64(l.Count)))
}

func msText(ms float64) string {
	switch {
	case ms < 1:
		return strconv.FormatFloat(ms*1000, 'f', 0, 64) + "µs"
	case ms < 100:
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
}

func rateText(rate float64, unit string) string {
	if rate <= 0 {
		return "max rate"
	}
	return strconv.FormatFloat(rate, 'f', -1, 64) + " " + unit
}

func versionName(v byte) string {
	if v == mqttwire.V5 {
		return "MQTT 5.0"
	}
	return "MQTT 3.1.1"
}

func interrupted(b bool) string {
	if b {
		return " — INTERRUPTED"
	}
	return ""
}

// commas writes n with thousands separators: 1234567 → "1,234,567".
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
