package rebalance

import "github.com/prometheus/client_golang/prometheus"

var (
	descMoved = prometheus.NewDesc("mqlb_rebalance_moved_total",
		"Connections closed to move their clients (rebalancing and evacuation), by the server they left.",
		[]string{"upstream", "server"}, nil)
	descQueue = prometheus.NewDesc("mqlb_connect_queue_length",
		"Clients waiting for a server's turn under max_connect_rate.", []string{"upstream"}, nil)
)

// Collector exports the manager's metrics.
type Collector struct{ m *Manager }

// Collector returns the Prometheus collector of m.
func (m *Manager) Collector() *Collector { return &Collector{m: m} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMoved
	ch <- descQueue
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ups := c.m.ups()
	c.m.prune(func(u, s string) bool { return ups.Get(u) != nil && ups.Get(u).Server(s) != nil })
	seen := map[[2]string]bool{}
	c.m.Moved(func(u, s string, n uint64) {
		seen[[2]string{u, s}] = true
		ch <- prometheus.MustNewConstMetric(descMoved, prometheus.CounterValue, float64(n), u, s)
	})
	for _, u := range ups.All() {
		for _, s := range u.Servers { // at 0 until a first move: increase() needs the series
			if !seen[[2]string{u.Name, s.Name()}] {
				ch <- prometheus.MustNewConstMetric(descMoved, prometheus.CounterValue, 0, u.Name, s.Name())
			}
		}
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(u.ConnectQueue()), u.Name)
	}
}
