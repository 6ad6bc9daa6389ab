package lb

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqlb/mqlb/internal/certinfo"
	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/version"
)

// lbMetrics are the load balancer's own metrics (the proxy's are
// proxy.Collector's): build, reloads, certificates.
type lbMetrics struct {
	reloads    *prometheus.CounterVec
	lastReload prometheus.Gauge
	certs      *certinfo.Collector
}

func newLBMetrics(reg *prometheus.Registry) *lbMetrics {
	m := &lbMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqlb_reloads_total", Help: "Config reloads (SIGHUP, POST /-/reload) by result: ok or error.",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mqlb_last_reload_success_timestamp_seconds", Help: "When the config was last loaded successfully (start or reload), as a Unix time.",
		}),
		certs: certinfo.NewCollector(nil),
	}
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	m.lastReload.SetToCurrentTime()
	reg.MustRegister(m.reloads, m.lastReload, m.certs, version.BuildInfo(nil))
	return m
}

func (m *lbMetrics) reloaded(err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.lastReload.SetToCurrentTime()
}

// checkCerts loads the served certificates, warns about any that is expired
// or not yet valid or that tls.ciphers cannot use (and returns the
// warnings), and exports their expiry.
func (l *LB) checkCerts(cfg *config.Config) []string {
	return l.metrics.certs.Check(cfg.CertSources(), l.log)
}
