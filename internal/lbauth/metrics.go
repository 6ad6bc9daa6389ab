package lbauth

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts authentication decisions. It lives as long as the process
// (register it once); every gate generation shares it.
type Metrics struct {
	decisions *prometheus.CounterVec
	hits      *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

// NewMetrics makes the metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqlb_auth_total",
			Help: "Authentication service decisions by upstream and result (allow, deny, error), cached ones included.",
		}, []string{"upstream", "result"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqlb_auth_cache_hits_total",
			Help: "Authentication decisions answered from the cache.",
		}, []string{"upstream"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mqlb_auth_request_seconds",
			Help:    "Time of requests to the authentication service.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"upstream"}),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.decisions.Describe(ch)
	m.hits.Describe(ch)
	m.duration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.decisions.Collect(ch)
	m.hits.Collect(ch)
	m.duration.Collect(ch)
}

func (m *Metrics) result(upstream, result string) {
	if m != nil {
		m.decisions.WithLabelValues(upstream, result).Inc()
	}
}

func (m *Metrics) cacheHit(upstream string) {
	if m != nil {
		m.hits.WithLabelValues(upstream).Inc()
	}
}

func (m *Metrics) observe(upstream string, d time.Duration) {
	if m != nil {
		m.duration.WithLabelValues(upstream).Observe(d.Seconds())
	}
}
