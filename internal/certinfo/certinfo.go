// Package certinfo watches the validity of the server certificates mqlb
// serves (load balancer and node listeners): it warns about a certificate
// that is expired or not yet valid, at start, in mqlb check and on reload,
// and exports mqlb_tls_cert_expiry_seconds so an alert can fire before a
// certificate expires. It reads only the certificate, never the key.
package certinfo

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
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
		NotBefore: x.NotBefore, NotAfter: x.NotAfter}
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

// Source is one listener's certificate file.
type Source struct{ Listener, File string }

// LoadAll loads every source's certificate; a file that cannot be read is
// left out (the listener itself reports that).
func LoadAll(srcs []Source) []Cert {
	var out []Cert
	for _, s := range srcs {
		if c, err := Load(s.Listener, s.File); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// Problems returns the problems of certs at now, one per invalid certificate.
func Problems(certs []Cert, now time.Time) []error {
	var errs []error
	for _, c := range certs {
		if p := c.Problem(now); p != "" {
			errs = append(errs, errors.New(p))
		}
	}
	return errs
}
