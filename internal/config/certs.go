package config

import "github.com/mqlb/mqlb/internal/certinfo"

// CertSources lists the server certificates the load balancer's listeners serve.
func (c *Config) CertSources() []certinfo.Source {
	var out []certinfo.Source
	for _, l := range c.Listeners {
		if l.TLS != nil && l.TLS.Cert != "" {
			out = append(out, certinfo.Source{Listener: l.Name, File: l.TLS.Cert})
		}
	}
	return out
}

// CertSources lists the server certificates the node's listeners serve.
func (n *Node) CertSources() []certinfo.Source {
	var out []certinfo.Source
	for _, l := range n.Listeners {
		if l.TLS != nil && l.TLS.Cert != "" {
			out = append(out, certinfo.Source{Listener: l.Name, File: l.TLS.Cert})
		}
	}
	return out
}
