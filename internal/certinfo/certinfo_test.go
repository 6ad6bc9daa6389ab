package certinfo

import (
	"crypto/x509"
	"fmt"
	"slices"
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
	certs := LoadAll([]Source{{Listener: "a", File: valid.CertFile}, {Listener: "b", File: expired.CertFile}, {Listener: "c", File: early.CertFile}, {Listener: "d", File: "/nonexistent.pem"}})
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
	if want := "of listener b expired on " + now.Add(-time.Hour).UTC().Format(time.RFC3339) + ", 1h0m0s ago"; !strings.Contains(errs[0].Error(), `certificate "expired.example"`) ||
		!strings.Contains(errs[0].Error(), want) {
		t.Errorf("expired: %v\nwant …%s", errs[0], want)
	}
	if want := "of listener c is not valid until " + now.Add(time.Hour).UTC().Format(time.RFC3339) + ", in 1h0m0s"; !strings.Contains(errs[1].Error(), want) {
		t.Errorf("not yet valid: %v\nwant …%s", errs[1], want)
	}
}

// TestProblemsInDays: past 48 hours the distance to the date is said in
// days (the audit's "expired 60048h46m24s ago"), after the date.
func TestProblemsInDays(t *testing.T) {
	ca := testutil.NewCA(t)
	end := time.Date(2020, 2, 1, 0, 0, 0, 0, time.UTC)
	old := ca.ServerValid("old.example", end.AddDate(-1, 0, 0), end)
	late := ca.ServerValid("late.example", end.AddDate(0, 0, 10), end.AddDate(1, 0, 0))
	now := end.Add(2502*24*time.Hour + 18*time.Hour)
	errs := Problems(LoadAll([]Source{{Listener: "a", File: old.CertFile}}), now)
	if want := "of listener a expired on 2020-02-01T00:00:00Z, 2502 days ago"; len(errs) != 1 || !strings.HasSuffix(errs[0].Error(), want) {
		t.Errorf("long expired: %v\nwant …%s", errs, want)
	}
	errs = Problems(LoadAll([]Source{{Listener: "b", File: late.CertFile}}), end)
	if want := "of listener b is not valid until 2020-02-11T00:00:00Z, in 10 days"; len(errs) != 1 || !strings.HasSuffix(errs[0].Error(), want) {
		t.Errorf("valid in 10 days: %v\nwant …%s", errs, want)
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
	c.Set(LoadAll([]Source{{Listener: "tls", File: ca.ServerValid("srv", time.Now().Add(-time.Hour), end).CertFile}}))
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

// TestCipherProblem: a listener's tls.ciphers with no suite its
// certificate's key can sign with (ECDHE_ECDSA suites take an ECDSA or
// Ed25519 key, ECDHE_RSA suites an RSA key) is warned about: every TLS 1.2
// client given that certificate fails its handshake.
func TestCipherProblem(t *testing.T) {
	ca := testutil.NewCA(t)
	now := time.Now()
	rsaCert, ecCert := ca.ServerRSA("rsa.example"), ca.Server("ec.example")
	const ecSuite, rsaSuite = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
	for _, tc := range []struct {
		name    string
		file    string
		ciphers []string
		want    string
	}{
		{"RSA key, ECDSA suite", rsaCert.CertFile, []string{ecSuite},
			`certificate "rsa.example" (serial %s) of listener l has an RSA key, which none of tls.ciphers (` + ecSuite + `) can use: ` +
				"TLS 1.2 clients given it fail the handshake; list a TLS_ECDHE_RSA_ suite"},
		{"ECDSA key, RSA suite", ecCert.CertFile, []string{rsaSuite},
			`certificate "ec.example" (serial %s) of listener l has an ECDSA key, which none of tls.ciphers (` + rsaSuite + `) can use: ` +
				"TLS 1.2 clients given it fail the handshake; list a TLS_ECDHE_ECDSA_ suite"},
		{"RSA key, both", rsaCert.CertFile, []string{ecSuite, rsaSuite}, ""},
		{"ECDSA key, both", ecCert.CertFile, []string{rsaSuite, ecSuite}, ""},
		{"Go's defaults", rsaCert.CertFile, nil, ""},
	} {
		certs := LoadAll([]Source{{Listener: "l", File: tc.file, Ciphers: tc.ciphers}})
		var got []string
		for _, p := range Problems(certs, now) {
			got = append(got, p.Error())
		}
		want := []string(nil)
		if tc.want != "" {
			want = []string{fmt.Sprintf(tc.want, certs[0].Serial)}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %q\nwant %q", tc.name, got, want)
		}
	}
	// Go signs with an Ed25519 key under the ECDHE_ECDSA suites (RFC 8422).
	ed := Cert{Listener: "l", Subject: "ed", Key: x509.Ed25519, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	if ed.Ciphers = []string{ecSuite}; ed.CipherProblem() != "" {
		t.Errorf("Ed25519 with an ECDSA suite: %s", ed.CipherProblem())
	}
	if ed.Ciphers = []string{rsaSuite}; !strings.Contains(ed.CipherProblem(), "has an Ed25519 key") {
		t.Errorf("Ed25519 with an RSA suite: %q", ed.CipherProblem())
	}
}
