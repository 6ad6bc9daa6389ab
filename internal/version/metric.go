package version

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfo returns the mqlb_build_info gauge: always 1, labelled with the
// version, commit and Go version (join on it to annotate other series).
func BuildInfo(constLabels prometheus.Labels) prometheus.Collector {
	l := prometheus.Labels{"version": Version, "commit": commit(), "goversion": runtime.Version()}
	for k, v := range constLabels {
		l[k] = v
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mqlb_build_info", Help: "Always 1; the labels say which mqlb build is running.", ConstLabels: l,
	}, func() float64 { return 1 })
}
