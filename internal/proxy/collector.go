package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqlb/mqlb/internal/upstream"
)

var (
	descActive = prometheus.NewDesc("mqlb_connections_active",
		"Connections relayed right now.", []string{"listener", "upstream", "server"}, nil)
	descTotal = prometheus.NewDesc("mqlb_connections_total",
		"Client connections by how they ended up: ok (relayed) or the refusal reason.", []string{"listener", "result"}, nil)
	descBytes = prometheus.NewDesc("mqlb_bytes_total",
		"Bytes relayed; direction in is client to server, out is server to client.", []string{"upstream", "server", "direction"}, nil)
	descUp = prometheus.NewDesc("mqlb_server_up",
		"1 when the server passes health checks, else 0.", []string{"upstream", "server"}, nil)
	descState = prometheus.NewDesc("mqlb_server_state",
		"1 for the server's current state (up, down, drain, disabled).", []string{"upstream", "server", "state"}, nil)
	descDialFails = prometheus.NewDesc("mqlb_server_connect_failures_total",
		"Failed attempts to connect a client to the server (dial, write or CONNACK).", []string{"upstream", "server"}, nil)
	descServerTotal = prometheus.NewDesc("mqlb_server_connections_total",
		"Client connections relayed to the server since start (rate() gives new connections per second).", []string{"upstream", "server"}, nil)
	descClients = prometheus.NewDesc("mqlb_client_connections",
		"Client connections open in any phase (handshake, inspection, relay).", nil, nil)
)

// Collector exports the proxy's metrics to Prometheus. Gauges and byte
// totals are computed from the live table and the servers at scrape time.
type Collector struct {
	p      *Proxy
	checks *prometheus.HistogramVec
}

// NewCollector returns the collector for p.
func NewCollector(p *Proxy) *Collector {
	return &Collector{p: p, checks: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mqlb_health_check_duration_seconds",
		Help:    "Duration of active health checks.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"upstream", "server", "result"})}
}

// ObserveCheck is an upstream.CheckObserver.
func (c *Collector) ObserveCheck(s *upstream.Server, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "fail"
	}
	c.checks.WithLabelValues(s.Upstream(), s.Name(), result).Observe(d.Seconds())
}

// Forget drops the health check series of every server prev has and next
// has not (removed through the admin API or by a reload, or its whole
// upstream removed): the other per-server metrics are made from the live
// servers at scrape time, so without this only these series would stay.
// Call it after prev's checks stopped, so none is recorded again.
func (c *Collector) Forget(prev, next *upstream.Set) {
	if prev == nil {
		return
	}
	for _, u := range prev.All() {
		nu := next.Get(u.Name)
		for _, s := range u.Servers {
			if nu == nil || nu.Server(s.Name()) == nil {
				c.checks.DeletePartialMatch(prometheus.Labels{"upstream": u.Name, "server": s.Name()})
			}
		}
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descTotal, descBytes, descUp, descState, descDialFails, descServerTotal, descClients} {
		ch <- d
	}
	c.checks.Describe(ch)
	c.p.metrics.inspect.Describe(ch)
	c.p.metrics.duration.Describe(ch)
}

type serverKey struct{ upstream, server string }

type liveCounts struct {
	byListener map[[3]string]int
	in, out    map[serverKey]int64
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	live := liveCounts{byListener: map[[3]string]int{}, in: map[serverKey]int64{}, out: map[serverKey]int64{}}
	c.p.conns.Each(func(cn *Conn) {
		k := serverKey{cn.upstreamName(), cn.serverName()}
		live.byListener[[3]string{cn.listenerName(), k.upstream, k.server}]++
		live.in[k] += cn.Stats.In.Load()
		live.out[k] += cn.Stats.Out.Load()
	})
	// Every server a listener can reach has a series from the start, at 0
	// while it relays nothing: a query or an alert sees the series, not
	// its absence.
	for _, r := range c.p.Runtime().routes {
		for _, s := range r.Upstream.Servers {
			k := [3]string{r.Listener.Name, r.Upstream.Name, s.Name()}
			live.byListener[k] += 0
		}
	}
	for k, n := range live.byListener {
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(n), k[0], k[1], k[2])
	}
	c.p.metrics.Results(func(l, r string, n uint64) {
		ch <- prometheus.MustNewConstMetric(descTotal, prometheus.CounterValue, float64(n), l, r)
	})
	for _, u := range c.p.Runtime().Upstreams.All() {
		for _, s := range u.Servers {
			c.collectServer(ch, s, live)
		}
	}
	ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(c.p.Active()))
	c.checks.Collect(ch)
	c.p.metrics.inspect.Collect(ch)
	c.p.metrics.duration.Collect(ch)
}

func (c *Collector) collectServer(ch chan<- prometheus.Metric, s *upstream.Server, live liveCounts) {
	u, n := s.Upstream(), s.Name()
	k := serverKey{u, n}
	in, out := s.ClosedBytes()
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(in+live.in[k]), u, n, "in")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(out+live.out[k]), u, n, "out")
	up := 0.0
	if s.Healthy() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, u, n)
	st := s.State()
	for _, state := range []upstream.State{upstream.StateUp, upstream.StateDown, upstream.StateDrain, upstream.StateDisabled} {
		v := 0.0
		if st == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, u, n, state.String())
	}
	ch <- prometheus.MustNewConstMetric(descDialFails, prometheus.CounterValue, float64(s.Failures()), u, n)
	ch <- prometheus.MustNewConstMetric(descServerTotal, prometheus.CounterValue, float64(s.Total()), u, n)
}
