package config

import "github.com/mqlb/mqlb/internal/certinfo"

// CertSources lists the server certificates the load balancer's listeners serve.
func (c *Config) CertSources() []certinfo.Source {
	var out []certinfo.Source
	for _, l := range c.Listeners {
		out = l.TLS.appendSource(out, l.Name)
	}
	return out
}

// CertSources lists the server certificates the node's listeners serve.
func (n *Node) CertSources() []certinfo.Source {
	var out []certinfo.Source
	for _, l := range n.Listeners {
		out = l.TLS.appendSource(out, l.Name)
	}
	return out
}

// appendSource adds the certificates t serves on listener, if any, with
// the listener's TLS 1.2 suites.
func (t *TLS) appendSource(out []certinfo.Source, listener string) []certinfo.Source {
	if t == nil {
		return out
	}
	for _, c := range t.pairs() {
		if c.Cert != "" {
			out = append(out, certinfo.Source{Listener: listener, File: c.Cert, Ciphers: t.Ciphers})
		}
	}
	return out
}
