package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds what the proxy counts on its hot path: connection results
// per listener and the CONNECT inspection time. Gauges and byte totals are
// computed at scrape time from the live table and the servers (see
// Collector), so the hot path pays for nothing else.
type Metrics struct {
	results  sync.Map // listener → *resultCounts
	inspect  prometheus.Histogram
	duration *prometheus.HistogramVec // relayed connections, by upstream
}

type resultCounts struct {
	mu sync.Mutex
	m  map[string]*atomic.Uint64
}

// NewMetrics makes the proxy's metrics.
func NewMetrics() *Metrics {
	return &Metrics{inspect: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "mqlb_connect_inspect_seconds",
		Help:    "Time from accepting a connection (after TLS) to having its whole CONNECT.",
		Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 10},
	}), duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mqlb_connection_duration_seconds",
		Help:    "How long relayed connections lasted, observed when they close.",
		Buckets: []float64{1, 10, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600},
	}, []string{"upstream"})}
}

func (m *Metrics) result(listener, result string) {
	if result == "" || (result == ResultOK && listener == "") {
		return
	}
	v, ok := m.results.Load(listener)
	if !ok {
		v, _ = m.results.LoadOrStore(listener, &resultCounts{m: map[string]*atomic.Uint64{}})
	}
	rc := v.(*resultCounts)
	rc.mu.Lock()
	c := rc.m[result]
	if c == nil {
		c = new(atomic.Uint64)
		rc.m[result] = c
	}
	rc.mu.Unlock()
	c.Add(1)
}

// Results calls f for every (listener, result, count).
func (m *Metrics) Results(f func(listener, result string, n uint64)) {
	m.results.Range(func(k, v any) bool {
		rc := v.(*resultCounts)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for r, c := range rc.m {
			f(k.(string), r, c.Load())
		}
		return true
	})
}
