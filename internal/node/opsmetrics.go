package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mqlb/mqlb/internal/certinfo"
	"github.com/mqlb/mqlb/internal/version"
)

// opsMetrics adds what operators alert on to the node's registry:
// mqlb_build_info, mqlb_node_store_available (the replicated store is
// formed and has a quorum) and mqlb_tls_cert_expiry_seconds. It warns about
// a served certificate that is expired or not yet valid, or that none of its
// listener's tls.ciphers can use (and so does each reload: applyTLS).
func (m *metrics) opsMetrics(n *Node, labels prometheus.Labels) {
	m.gauge("store_available", "1 when the replicated store (retained messages, sessions) is formed and usable, 0 without quorum.", labels, func() float64 {
		if n.storeUp() != nil {
			return 0
		}
		return 1
	})
	m.certs = certinfo.NewCollector(labels)
	m.certs.Check(n.cfg.CertSources(), n.log) // and on each reload (Node.Reload)
	m.reg.MustRegister(m.certs, version.BuildInfo(labels),
		// the process's: its heap, collector pacing (process.gc_headroom), goroutines, CPU, file descriptors
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}
