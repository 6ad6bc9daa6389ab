package certinfo

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var descExpiry = prometheus.NewDesc("mqlb_tls_cert_expiry_seconds",
	"When a served certificate expires (its NotAfter), as a Unix time; alert on this minus time().",
	[]string{"listener", "subject", "serial"}, nil)

// Collector exports mqlb_tls_cert_expiry_seconds for the certificates last
// set; Set replaces them (on reload).
type Collector struct {
	certs  atomic.Pointer[[]Cert]
	labels prometheus.Labels
}

// NewCollector returns a collector with no certificates; constLabels are
// added to its metric (a node adds node=NAME).
func NewCollector(constLabels prometheus.Labels) *Collector {
	c := &Collector{labels: constLabels}
	c.Set(nil)
	return c
}

// Set replaces the exported certificates.
func (c *Collector) Set(certs []Cert) { c.certs.Store(&certs) }

func (c *Collector) desc() *prometheus.Desc {
	if len(c.labels) == 0 {
		return descExpiry
	}
	return prometheus.NewDesc("mqlb_tls_cert_expiry_seconds",
		"When a served certificate expires (its NotAfter), as a Unix time; alert on this minus time().",
		[]string{"listener", "subject", "serial"}, c.labels)
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc() }

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	d := c.desc()
	for _, ct := range *c.certs.Load() {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(ct.NotAfter.Unix()), ct.Listener, ct.Subject, ct.Serial)
	}
}

// Check loads the certificates of srcs, logs a warning for each of their
// Problems now and returns them, and exports the certificates' expiry in
// place of the ones set before: what the load balancer and a node do at
// start and on every reload.
func (c *Collector) Check(srcs []Source, log *slog.Logger) []string {
	certs := LoadAll(srcs)
	var warnings []string
	for _, p := range Problems(certs, time.Now()) {
		log.Warn(p.Msg, "problem", p.Text)
		warnings = append(warnings, p.Text)
	}
	c.Set(certs)
	return warnings
}
