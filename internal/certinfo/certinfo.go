// Package certinfo watches the validity of the server certificates mqlb
// serves (load balancer and node listeners): it warns about a certificate
// that is expired or not yet valid, or whose key none of the listener's
// tls.ciphers can use, at start, in mqlb check and on reload, and exports
// mqlb_tls_cert_expiry_seconds so an alert can fire before a certificate
// expires. It reads only the certificate, never the key.
package certinfo

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Cert is what is known of one served certificate: the leaf of its file.
type Cert struct {
	Listener  string // the listener serving it
	File      string
	Subject   string // the subject's common name, or the whole subject without one
	Serial    string // hex
	NotBefore time.Time
	NotAfter  time.Time
	Key       x509.PublicKeyAlgorithm // its key's: RSA, ECDSA, Ed25519
	Ciphers   []string                // the listener's tls.ciphers (none: Go's defaults)
}

// Load reads the first certificate (the leaf) of a PEM file served by listener.
func Load(listener, file string) (Cert, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Cert{}, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return Cert{}, fmt.Errorf("%s: no PEM certificate", file)
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		x, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return Cert{}, fmt.Errorf("%s: %w", file, err)
		}
		return fromX509(listener, file, x), nil
	}
}

func fromX509(listener, file string, x *x509.Certificate) Cert {
	subject := x.Subject.CommonName
	if subject == "" {
		subject = x.Subject.String()
	}
	return Cert{Listener: listener, File: file, Subject: subject, Serial: hex.EncodeToString(x.SerialNumber.Bytes()),
		NotBefore: x.NotBefore, NotAfter: x.NotAfter, Key: x.PublicKeyAlgorithm}
}

// CipherProblem says what is wrong when none of the listener's TLS 1.2
// suites can be used with c's key: "" when one can, or when the listener
// takes Go's defaults. Go signs ECDHE_ECDSA suites with an ECDSA or an
// Ed25519 key (RFC 8422) and ECDHE_RSA suites with an RSA key; the other
// TLS 1.2 suites are refused by the config. TLS 1.3 is not concerned (its
// suites are not chosen by key), but tls.ciphers and min_version 1.3 do
// not go together.
func (c Cert) CipherProblem() string {
	family := "TLS_ECDHE_ECDSA_"
	switch c.Key {
	case x509.RSA:
		family = "TLS_ECDHE_RSA_"
	case x509.ECDSA, x509.Ed25519:
	default:
		return "" // a key crypto/tls does not serve with fails to load before this
	}
	if len(c.Ciphers) == 0 || slices.ContainsFunc(c.Ciphers, func(s string) bool { return strings.HasPrefix(s, family) }) {
		return ""
	}
	return fmt.Sprintf("certificate %q (serial %s) of listener %s has an %s key, which none of tls.ciphers (%s) can use: "+
		"TLS 1.2 clients given it fail the handshake; list a %s suite", c.Subject, c.Serial, c.Listener, c.Key,
		strings.Join(c.Ciphers, ", "), family)
}

// Problem says what is wrong with c at now: "" when it is valid. The date
// comes first, then how far it is.
func (c Cert) Problem(now time.Time) string {
	switch {
	case now.After(c.NotAfter):
		return fmt.Sprintf("certificate %q (serial %s) of listener %s expired on %s, %s ago", c.Subject, c.Serial, c.Listener,
			c.NotAfter.UTC().Format(time.RFC3339), span(now.Sub(c.NotAfter)))
	case now.Before(c.NotBefore):
		return fmt.Sprintf("certificate %q (serial %s) of listener %s is not valid until %s, in %s", c.Subject, c.Serial, c.Listener,
			c.NotBefore.UTC().Format(time.RFC3339), span(c.NotBefore.Sub(now)))
	}
	return ""
}

// span says d in whole days past 48 hours ("2502 days", not "60048h46m24s"),
// to the second below.
func span(d time.Duration) string {
	if d > 48*time.Hour {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.Round(time.Second).String()
}

// Source is one listener's certificate file, and the TLS 1.2 suites the
// listener takes (tls.ciphers; none: Go's defaults).
type Source struct {
	Listener, File string
	Ciphers        []string
}

// LoadAll loads every source's certificate; a file that cannot be read is
// left out (the listener itself reports that).
func LoadAll(srcs []Source) []Cert {
	var out []Cert
	for _, s := range srcs {
		if c, err := Load(s.Listener, s.File); err == nil {
			c.Ciphers = s.Ciphers
			out = append(out, c)
		}
	}
	return out
}

// A Problem is a warning about a served certificate: Msg is what a log
// line about it says, Text the problem.
type Problem struct{ Msg, Text string }

func (p Problem) Error() string { return p.Text }

// Problems returns the problems of certs at now: each certificate not
// valid now (Problem), and each none of its listener's tls.ciphers can use
// (CipherProblem).
func Problems(certs []Cert, now time.Time) []Problem {
	var out []Problem
	for _, c := range certs {
		if p := c.Problem(now); p != "" {
			out = append(out, Problem{Msg: "TLS certificate not valid now", Text: p})
		}
		if p := c.CipherProblem(); p != "" {
			out = append(out, Problem{Msg: "TLS certificate unusable with tls.ciphers", Text: p})
		}
	}
	return out
}
