package certinfo

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqlb/mqlb/internal/testutil"
)

func TestProblems(t *testing.T) {
	ca := testutil.NewCA(t)
	now := time.Now().Truncate(time.Second) // certificates hold whole seconds
	valid := ca.ServerValid("valid.example", now.Add(-time.Hour), now.Add(24*time.Hour))
	expired := ca.ServerValid("expired.example", now.Add(-48*time.Hour), now.Add(-time.Hour))
	early := ca.ServerValid("early.example", now.Add(time.Hour), now.Add(48*time.Hour))
	certs := LoadAll([]Source{{"a", valid.CertFile}, {"b", expired.CertFile}, {"c", early.CertFile}, {"d", "/nonexistent.pem"}})
	if len(certs) != 3 {
		t.Fatalf("loaded %d certificates, want 3", len(certs))
	}
	if certs[0].Subject != "valid.example" || certs[0].Serial == "" || !certs[0].NotAfter.Equal(now.Add(24*time.Hour).Truncate(time.Second)) {
		t.Errorf("first: %+v", certs[0])
	}
	errs := Problems(certs, now)
	if len(errs) != 2 {
		t.Fatalf("problems: %v", errs)
	}
	if !strings.Contains(errs[0].Error(), `certificate "expired.example"`) || !strings.Contains(errs[0].Error(), "of listener b expired 1h0m0s ago") {
		t.Errorf("expired: %v", errs[0])
	}
	if !strings.Contains(errs[1].Error(), "of listener c is not valid until") {
		t.Errorf("not yet valid: %v", errs[1])
	}
}

func TestCollector(t *testing.T) {
	ca := testutil.NewCA(t)
	end := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	c := NewCollector(prometheus.Labels{"node": "n1"})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Fatalf("series before Set: %v", mfs)
	}
	c.Set(LoadAll([]Source{{"tls", ca.ServerValid("srv", time.Now().Add(-time.Hour), end).CertFile}}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if v := mfs[0].GetMetric()[0].GetGauge().GetValue(); v != float64(end.Unix()) {
		t.Errorf("value %v, want %d", v, end.Unix())
	}
	labels := map[string]string{}
	for _, l := range mfs[0].GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["listener"] != "tls" || labels["node"] != "n1" || labels["subject"] != "srv" || labels["serial"] == "" {
		t.Errorf("labels %v", labels)
	}
}
